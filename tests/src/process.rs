//! A child process the harness owns: killed (SIGKILL) and reaped when it is dropped or
//! killed, so no test leaves processes or zombies behind, whichever way it ends.

use std::process::{Child, Command, ExitStatus};

/// Holds at most one running child; empty once killed (it can be spawned into again).
#[derive(Default)]
pub struct Process(Option<Child>);

impl Process {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Process> {
        cmd.spawn().map(|c| Process(Some(c)))
    }

    /// Takes over a child spawned elsewhere (e.g. to read its stdout first).
    pub fn from_child(child: Child) -> Process {
        Process(Some(child))
    }

    /// SIGKILL and wait: nothing is flushed or drained on the way down. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (as an orchestrator stops it), then waits up to `limit` for it to exit:
    /// its exit status, or None if it still runs (it is then killed).
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<ExitStatus> {
        let pid = self.id()?;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(st) = self.exited() {
                self.0 = None;
                return Some(st);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Its exit status if it has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Its pid while it runs.
    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
