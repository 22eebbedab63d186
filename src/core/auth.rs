//! Password hashing on a bounded pool of threads.
//!
//! bcrypt is deliberately slow, so it never runs on a session thread while
//! that thread holds anything, and never on more threads than the machine
//! has cores: a login storm queues here instead of starving chat delivery.
//! Unknown usernames are verified against a dummy hash made at start with
//! the same cost, so a failed login takes as long whether or not the account
//! exists (PROTOCOL.md 5.1).

use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};
use thiserror::Error;

use super::validate::MAX_PASSWORD;

/// Failures of the hashing pool.
#[derive(Debug, Error)]
pub enum AuthError {
    /// bcrypt refused the input or the cost.
    #[error("bcrypt: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    /// The pool's threads are gone (the server is stopping).
    #[error("the password hashing pool has stopped")]
    PoolStopped,
    /// A pool thread could not be started.
    #[error("cannot start a hashing thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Work for a pool thread; each carries the channel its answer goes to.
enum Job {
    Hash {
        password: String,
        cost: u32,
        reply: Sender<Result<String, AuthError>>,
    },
    Verify {
        password: String,
        hash: String,
        reply: Sender<bool>,
    },
}

/// A handle to the hashing pool; cheap to share behind an `Arc`.
pub struct Hasher {
    /// Queue of pending jobs, bounded so a storm back-pressures sessions.
    jobs: Sender<Job>,
    /// bcrypt cost for new hashes.
    cost: u32,
    /// Hash of a random password at `cost`, verified for unknown users.
    dummy_hash: String,
}

impl Hasher {
    /// Starts `threads` workers (at least one) hashing at `cost`.
    ///
    /// # Errors
    /// [`AuthError::Bcrypt`] for a cost bcrypt does not accept (4 to 31),
    /// [`AuthError::Spawn`] if a thread cannot start.
    pub fn start(cost: u32, threads: usize) -> Result<Hasher, AuthError> {
        let dummy_hash = bcrypt::hash(format!("dummy-{:?}", std::time::SystemTime::now()), cost)?;
        let (jobs, queue) = bounded::<Job>(1024);
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .stack_size(128 * 1024)
                .spawn(move || work(&queue))?;
        }
        Ok(Hasher { jobs, cost, dummy_hash })
    }

    /// Hashes a new password.
    ///
    /// # Errors
    /// [`AuthError`] when bcrypt fails or the pool has stopped.
    pub fn hash(&self, password: &str) -> Result<String, AuthError> {
        let (reply, answer) = bounded(1);
        self.jobs
            .send(Job::Hash {
                password: password.to_string(),
                cost: self.cost,
                reply,
            })
            .map_err(|_| AuthError::PoolStopped)?;
        answer.recv().map_err(|_| AuthError::PoolStopped)?
    }

    /// Checks `password` against `hash`, or against the dummy hash when the
    /// account does not exist (then always false, after the same work).
    /// Passwords longer than bcrypt accepts are cut to its limit so the work
    /// is still done; they never match, because no stored password is longer.
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let too_long = password.len() > MAX_PASSWORD;
        let mut cut = password.len().min(MAX_PASSWORD);
        while !password.is_char_boundary(cut) {
            cut -= 1;
        }
        let (reply, answer) = bounded(1);
        let job = Job::Verify {
            password: password[..cut].to_string(),
            hash: hash.unwrap_or(&self.dummy_hash).to_string(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            return false;
        }
        answer.recv().unwrap_or(false) && hash.is_some() && !too_long
    }

    /// The bcrypt cost of new hashes.
    pub fn cost(&self) -> u32 {
        self.cost
    }
}

/// A pool thread: runs jobs until every [`Hasher`] handle is dropped.
fn work(queue: &Receiver<Job>) {
    for job in queue {
        match job {
            Job::Hash { password, cost, reply } => {
                let _ = reply.send(bcrypt::hash(password, cost).map_err(AuthError::from));
            }
            Job::Verify { password, hash, reply } => {
                let _ = reply.send(bcrypt::verify(password, &hash).unwrap_or(false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_unknown_users_never_match() {
        let hasher = Hasher::start(4, 2).unwrap();
        let hash = hasher.hash("secreto123").unwrap();
        assert!(hash.starts_with("$2"));
        assert!(hasher.verify("secreto123", Some(&hash)));
        assert!(!hasher.verify("secreto124", Some(&hash)));
        assert!(!hasher.verify("secreto123", None));
        assert!(!hasher.verify(&"x".repeat(200), Some(&hash)));
        assert_eq!(hasher.cost(), 4);
    }

    #[test]
    fn a_bad_cost_is_refused() {
        assert!(matches!(Hasher::start(99, 1), Err(AuthError::Bcrypt(_))));
    }
}
