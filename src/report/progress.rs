//! Progress on stderr: a bar on a terminal; a plain line every few seconds when
//! stderr is not a terminal (cluster logs); nothing when disabled (`--json`
//! keeps stdout clean either way: progress never goes to stdout).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A progress reporter for `total` units of work.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<(Instant, Instant)>>,
    label: String,
    total: u64,
    done: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// A reporter; `enabled = false` makes every call a no-op.
    pub fn new(label: &str, total: u64, enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        let now = Instant::now();
        Self {
            bar,
            plain: (enabled && !tty).then(|| Mutex::new((now, now))),
            label: label.to_string(),
            total,
            done: 0.into(),
        }
    }

    /// Marks `n` more units done.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(p) = &self.plain {
            let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
            if g.1.elapsed() >= Duration::from_secs(5) || done == self.total {
                let el = g.0.elapsed().as_secs_f64();
                let rate = done as f64 / el.max(1e-9);
                let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
                eprintln!(
                    "{}: {done}/{} ({rate:.2}/s, eta {eta:.0}s)",
                    self.label, self.total
                );
                g.1 = Instant::now();
            }
        }
    }

    /// Sets a status message (terminal bar only).
    pub fn message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{}: {msg}", self.label));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
