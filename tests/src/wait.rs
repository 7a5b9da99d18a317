//! The one polling loop of the harness: every "wait until" in the tests goes through it.

use std::time::{Duration, Instant};

/// Why an attempt did not succeed: `Again` to retry, `Stop` to give up at once (say, the
/// process being waited for has exited).
pub enum Retry {
    Again(String),
    Stop(String),
}

/// Calls `attempt` until it gives `Ok`, for at most `secs`: the first retries come fast
/// (20 ms), later ones back off to 200 ms so long waits do not load the machine. `Err`
/// carries the last reason, on a timeout or a `Stop`.
pub fn poll<T>(secs: u64, mut attempt: impl FnMut() -> Result<T, Retry>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut pause = Duration::from_millis(20);
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(Retry::Stop(why)) => return Err(why),
            Err(Retry::Again(why)) if Instant::now() >= deadline => return Err(why),
            Err(Retry::Again(_)) => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// `poll` that panics on a timeout, naming `what` and the last error.
pub fn wait_until<T>(what: &str, secs: u64, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    poll(secs, || attempt().map_err(Retry::Again))
        .unwrap_or_else(|last| panic!("timed out waiting for {what}: {last}"))
}
