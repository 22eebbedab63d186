//! The seam between the core and the wire: a codec turns protocol-neutral
//! replies and events into one wire protocol's bytes.
//!
//! Every connection's outbox holds the codec of the protocol it speaks.
//! Events are encoded by the fan-out once per [`Flavor`] among the
//! recipients, not once per recipient, so a codec must encode events the
//! same way for every connection of its flavor; replies may depend on the
//! connection (an IRC codec knows the client's nick).

use super::event::Event;
use super::reply::{Reply, ReplyTo};

/// Which encoding of events a codec produces. Connections of one flavor
/// share one encoded copy of every batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flavor(pub u32);

/// One wire protocol's encoder, as a connection's outbox uses it.
pub trait Codec: Send + Sync {
    /// The encoding of events this codec produces.
    fn flavor(&self) -> Flavor;

    /// Appends the bytes of `reply` to the command `to`. A multi-line reply
    /// is appended whole, so it reaches the wire contiguous.
    fn reply(&self, to: &ReplyTo, reply: &Reply, out: &mut Vec<u8>);

    /// Appends the bytes of `event` (nothing, for an event this protocol
    /// does not show).
    fn event(&self, event: &Event, out: &mut Vec<u8>);
}
