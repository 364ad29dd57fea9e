//! `icn logs --follow`: a job's stderr as its module writes it, until the job ends.

use std::io::Write;

use icn_protocol::wire::{JobState, JobView, LIVE_STDERR_WAIT_MS_MAX, printable};
use icn_protocol::{JobId, PublicKey};

use crate::client::Client;

/// Where followed stderr goes: raw bytes to a pipe or a file; on a terminal, text whose
/// control characters are shown, not obeyed (a job's stderr is the job's).
pub struct Sink<W: Write> {
    out: W,
    terminal: bool,
    /// The start of a character split between two reads, held for the next.
    partial: Vec<u8>,
}

impl Sink<std::io::StdoutLock<'static>> {
    /// Standard output, as text when it is a terminal.
    pub fn stdout() -> Self {
        use std::io::IsTerminal;
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        Sink::new(stdout.lock(), terminal)
    }
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, terminal: bool) -> Self {
        Sink { out, terminal, partial: Vec::new() }
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if !self.terminal {
            self.out.write_all(bytes)?;
            return self.out.flush();
        }
        self.partial.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.partial) {
            Ok(_) => self.partial.len(),
            // Bytes cut short at the end wait for the rest; anything else is shown replaced.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.partial.len(),
        };
        let complete: Vec<u8> = self.partial.drain(..complete).collect();
        self.show(&complete)
    }

    /// Writes what is held back, at the end.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.partial);
        self.show(&rest)
    }

    /// `bytes` on the terminal: as text, its control characters shown, not obeyed.
    fn show(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(printable(&String::from_utf8_lossy(bytes), &['\n', '\t']).as_bytes())?;
        self.out.flush()
    }
}

/// Follows `job`'s stderr into `sink` until the job is no longer queued or running; says
/// in `note` (for stderr) what a reader should know — bytes skipped, a run that started
/// again elsewhere — and returns the job as it ended. When nothing was followed live (the
/// job ended before, or its run's stderr was let go), the accepted run's stderr is written.
pub async fn follow<W: Write>(
    client: &Client,
    job: JobId,
    sink: &mut Sink<W>,
    mut note: impl FnMut(String),
) -> anyhow::Result<JobView> {
    let (mut from, mut worker, mut followed) = (0u64, None::<PublicKey>, false);
    loop {
        let live = client.live_stderr(job, from, LIVE_STDERR_WAIT_MS_MAX).await?;
        if live.skipped > 0 {
            note(format!(
                "[{} bytes of stderr skipped: they were written faster than they could be followed]",
                live.skipped
            ));
        }
        if let (Some(before), Some(now)) = (worker, live.worker)
            && before != now
        {
            note(format!("[the run started again on worker {}; its stderr follows]", now.short()));
        }
        worker = live.worker.or(worker);
        sink.write(&live.stderr)?;
        followed |= !live.stderr.is_empty();
        from = live.next;
        let open = matches!(live.state, JobState::Queued | JobState::Running { .. });
        if !open && live.stderr.is_empty() && live.skipped == 0 {
            break;
        }
    }
    let view = client.status(job).await?;
    if !followed && let Some((_, report)) = &view.result {
        sink.write(&report.stderr)?;
    }
    sink.finish()?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_is_shown_whole_characters_and_no_control_sequences() {
        let mut shown = Vec::new();
        let mut sink = Sink::new(&mut shown, true);
        let text = "naïve \u{1b}[2Jdone\n".as_bytes();
        // "ï" split across two reads.
        sink.write(&text[..3]).unwrap();
        sink.write(&text[3..]).unwrap();
        sink.finish().unwrap();
        let shown = String::from_utf8(shown).unwrap();
        assert!(shown.starts_with("naïve "), "{shown:?}");
        assert!(!shown.contains('\u{1b}') && !shown.contains('\u{fffd}'), "{shown:?}");
        assert!(shown.ends_with("done\n"), "{shown:?}");

        let mut piped = Vec::new();
        let mut sink = Sink::new(&mut piped, false);
        sink.write(&text[..3]).unwrap();
        sink.write(&text[3..]).unwrap();
        assert_eq!(piped, text, "piped, the bytes go as they are");
    }
}
