//! The write-ahead order, written once. A [`Driver`] owns the [`Core`] and a
//! [`JournalStore`]; each [`Driver::step`] lets the shell feed the core a batch of inputs,
//! appends the entries they made (the last one sealed) with their index rows and the
//! payloads they name in one atomic append, and only then hands back what the shell
//! carries out: its replies and the core's commands. Nobody hears of a state the journal
//! could still lose. No tokio, no clock: the coordinator's thread, the core's tests and
//! the simulation all run the same driver, over SQLite or the in-memory store.

use icn_governance::Genesis;
use icn_protocol::Seal;

use crate::store::{JournalStore, Payload, READ_ENTRIES_MAX};
use crate::{BadEntry, Command, Core, Entry, Now, Plant, Refusal, Wake, observe::Observation};

/// What a step made durable, and what the shell carries out now that it is.
#[derive(Debug, Default)]
pub struct Durable {
    /// Entries appended, the last one sealed; none when the batch changed nothing.
    pub entries: Vec<Entry>,
    /// The seal on the batch's last entry, when it made any.
    pub seal: Option<Seal>,
    /// What the core asks of the shell: dispatches, disconnects, stops, job changes.
    pub commands: Vec<Command>,
    /// When the core next needs to run with no input ([`Core::next_wake`]).
    pub wake: Wake,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError<E: std::error::Error + 'static> {
    /// The store refused the batch: nothing of it is durable, and nothing of it was
    /// handed out. The core is now ahead of its journal and must start again from it.
    #[error("cannot write the journal: {0}")]
    Store(#[source] E),
    /// An earlier batch failed to append: the driver takes no more.
    #[error("an earlier batch could not be written; restart from the journal")]
    Stopped,
}

/// What a step's inputs may use besides the core: the store, to read, and a place for
/// the payloads to store with the batch.
pub struct Turn<'a, S> {
    pub core: &'a mut Core,
    pub store: &'a S,
    payloads: &'a mut Vec<Payload>,
}

impl<S> Turn<'_, S> {
    /// Stores `payload` in the same append as the batch's entries.
    pub fn keep(&mut self, payload: Payload) {
        if !payload.bytes.is_empty() {
            self.payloads.push(payload);
        }
    }
}

/// Why a journal could not be replayed into a core.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError<E: std::error::Error + 'static> {
    #[error("cannot read the journal: {0}")]
    Store(#[source] E),
    #[error(transparent)]
    Bad(#[from] BadEntry),
    #[error("{0}")]
    Genesis(Refusal),
    #[error("cannot write the journal: {0}")]
    Append(#[source] E),
}

pub struct Driver<S> {
    core: Core,
    store: S,
    payloads: Vec<Payload>,
    stopped: bool,
}

impl<S: JournalStore> Driver<S> {
    /// A driver over a core that already holds what `store` holds (replayed and
    /// resumed by the shell, which checked the journal its own way).
    pub fn new(core: Core, store: S) -> Driver<S> {
        Driver { core, store, payloads: Vec::new(), stopped: false }
    }

    /// Replays everything `store` holds into `core` in chunks, checking each entry's
    /// link and seal as it goes, resumes at `now` and writes (or checks) the genesis:
    /// a start from any store. What was in flight is requeued; the commands that makes
    /// have no one to go to and are dropped.
    pub fn recover(
        mut core: Core,
        store: S,
        now: Now,
        genesis: &Genesis,
    ) -> Result<Driver<S>, RecoverError<S::Error>> {
        let (mut from, mut prev, mut sealed) = (0, crate::GENESIS_HASH, true);
        let coordinator = core.key.public();
        loop {
            let chunk = store.read(from, READ_ENTRIES_MAX).map_err(RecoverError::Store)?;
            let Some(last) = chunk.last() else { break };
            if let Some(bad) = crate::first_bad(&chunk, from, prev, &coordinator, None) {
                return Err(bad.into());
            }
            (from, prev, sealed) = (last.seq + 1, last.hash, last.seal.is_some());
            core.replay(&chunk)?;
        }
        if !sealed {
            // A batch is appended whole with its seal; an unsealed end is not a journal
            // this driver wrote, and what it says was never vouched for.
            let reason = "the journal ends after an entry without a seal".to_string();
            return Err(BadEntry { seq: from - 1, reason }.into());
        }
        core.resume(now);
        core.found(now, genesis).map_err(RecoverError::Genesis)?;
        let mut driver = Driver::new(core, store);
        let durable = driver.step(|_| ()).map_err(|e| match e {
            StepError::Store(e) => RecoverError::Append(e),
            StepError::Stopped => unreachable!("a new driver has not stopped"),
        })?;
        drop(durable);
        Ok(driver)
    }

    /// Feeds the core one batch of inputs (`inputs` calls its methods), makes what they
    /// journaled durable in one append, and only then returns what `inputs` returned
    /// (the replies) and the commands. When the append fails, nothing is returned to
    /// hand out, and the driver stops.
    pub fn step<R>(
        &mut self,
        inputs: impl FnOnce(&mut Turn<'_, S>) -> R,
    ) -> Result<(R, Durable), StepError<S::Error>> {
        if self.stopped {
            return Err(StepError::Stopped);
        }
        let replies =
            inputs(&mut Turn { core: &mut self.core, store: &self.store, payloads: &mut self.payloads });
        let entries = self.core.take_entries();
        let index = self.core.take_index();
        if !entries.is_empty() || !self.payloads.is_empty() {
            let appended = self.store.append(&entries, &index, &self.payloads);
            self.payloads.clear();
            if let Err(e) = appended {
                self.stopped = true;
                if !self.core.planted(Plant::ReplyEarly) {
                    return Err(StepError::Store(e));
                }
            }
        }
        let seal = entries.last().and_then(Entry::sealed);
        let durable =
            Durable { entries, seal, commands: self.core.take_commands(), wake: self.core.next_wake() };
        Ok((replies, durable))
    }

    /// Time passed: the core does what is due at `now` ([`Core::tick`]).
    pub fn tick(&mut self, now: Now) -> Result<Durable, StepError<S::Error>> {
        self.step(|turn| turn.core.tick(now)).map(|((), durable)| durable)
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for what lives beside the journal in it (an operator's checkpoint).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// What the records made live since the last take tell the shell's metrics.
    pub fn take_observations(&mut self) -> std::collections::VecDeque<Observation> {
        self.core.take_observations()
    }

    /// The core and its store, for a simulated crash or a shutdown.
    pub fn into_parts(self) -> (Core, S) {
        (self.core, self.store)
    }
}
