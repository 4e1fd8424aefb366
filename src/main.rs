//! `memkin`: the command-line front of the memkin library. Thin: clap parses
//! into plain structs (src/cli/), one conversion resolves and validates them,
//! and only the resolved configuration reaches the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, joined.
            eprintln!("memkin: error: {e:#}");
            let user = e.chain().any(|c| {
                c.downcast_ref::<memkin::Error>()
                    .is_some_and(|m| m.is_user_error())
            });
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}
