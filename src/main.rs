//! `memkin`: the command-line front of the memkin library. Thin: clap parses
//! into plain structs (src/cli/), one conversion resolves and validates them,
//! and only the resolved configuration reaches the library.

mod cli;

use std::process::ExitCode;

/// Mesa's Vulkan WSI connects to Wayland through libwayland-client, which
/// prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
/// (once per instance) unless the variable holds an absolute path; the socket
/// need not exist. When it does not, point it at a private directory
/// (`$TMPDIR/memkin-runtime-<uid>`, mode 0700) so that a successful run prints
/// no error line. Runs first in `main`, while the process has one thread.
#[allow(unsafe_code)]
fn quiet_wayland() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| std::path::Path::new(&v).is_absolute()) {
        return;
    }
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let mut dir = std::env::temp_dir().join(format!("memkin-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // Only a directory of ours, private, is used (not a planted link or file).
    let ours = std::fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
    if !ours {
        // Absolute and absent: libwayland is as content (the socket is missing).
        dir = std::env::temp_dir().join(format!("memkin-runtime-{uid}-{}", std::process::id()));
    }
    // SAFETY: called first in `main`, before any thread exists, so nothing
    // reads the environment concurrently.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
}

fn main() -> ExitCode {
    quiet_wayland();
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, joined, each once.
            eprintln!("memkin: error: {}", cli::one_line(&e));
            let user = e.chain().any(|c| {
                c.downcast_ref::<memkin::Error>()
                    .is_some_and(|m| m.is_user_error())
            });
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}
