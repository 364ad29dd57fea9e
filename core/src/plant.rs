//! Bugs planted on purpose, each behind a switch only the simulation's tests turn on
//! (`Core::plant`, with the `plant` feature): they show that the chaos sweep catches
//! what it claims to and names the invariant each one breaks. Without the feature no
//! switch can be turned, and every check of one is a constant `false`.

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plant {
    /// Every posting is applied twice: the payees are paid again under a second transfer.
    PostTwice,
    /// A decided effect is applied again when the next decision is made, after it.
    EffectTwice,
    /// A result is accepted with one agreeing replica fewer than the policy's quorum.
    ShortQuorum,
    /// The driver hands out a batch's replies even when its append failed: a reply is
    /// sent before its batch is durable.
    ReplyEarly,
    /// The spot-check draw as it was: computable from the job's id by anyone, so a
    /// worker can tell when it runs unchecked.
    PublicDraw,
}

impl Plant {
    pub const ALL: [Plant; 5] =
        [Plant::PostTwice, Plant::EffectTwice, Plant::ShortQuorum, Plant::ReplyEarly, Plant::PublicDraw];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The switches turned on, and what a planted bug remembers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plants {
    on: u8,
    /// The last decided effect, for [`Plant::EffectTwice`].
    pub last_effect: Option<icn_protocol::governance::Effect>,
}

impl Plants {
    /// Turns `plant` on; `false` when this build has no switches (no `plant` feature).
    pub fn turn_on(&mut self, plant: Plant) -> bool {
        if cfg!(feature = "plant") {
            self.on |= plant.bit();
        }
        cfg!(feature = "plant")
    }

    pub fn planted(&self, plant: Plant) -> bool {
        cfg!(feature = "plant") && self.on & plant.bit() != 0
    }
}
