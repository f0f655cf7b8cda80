//! Writing to stdout and stderr the way Unix tools do, never panicking:
//!
//! - stdout ([`outln!`]): a reader that goes away (`mycelium stats | head -1`) ends the
//!   process quietly instead of panicking in `println!`.
//! - stderr ([`errln!`], and the log through [`LogWriter`]): a message to a closed or broken
//!   stderr is lost, and the process goes on. `eprintln!` panics when stderr fails, which on
//!   the broker (`mycelium run 2>&1 | head`, a supervisor's closed log pipe) took down the
//!   task that logged, or the whole broker on SIGTERM.
//!
//! SIGPIPE stays ignored, as the Rust runtime sets it before `main`: a write to a closed pipe
//! fails with EPIPE, which these writers handle, instead of killing the process.

use std::io::Write;

/// Writes one line to stdout; exits with status 0 if stdout is a closed pipe.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        errln!("error: writing to stdout: {error}");
        std::process::exit(1);
    }
}

/// Writes one line to stderr; a failure is ignored (there is nowhere left to report it).
pub fn error_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Writes to stderr without panicking, and without a partial text becoming a partial line.
pub fn error_text(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` through [`line`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// A line for people: on stdout, or on stderr when stdout carries JSON (`--json`), so that
/// stdout holds nothing but the JSON document.
macro_rules! humanln {
    ($json:expr, $($arg:tt)*) => {
        if $json {
            $crate::output::error_line(format_args!($($arg)*))
        } else {
            $crate::output::line(format_args!($($arg)*))
        }
    };
}
pub(crate) use humanln;

/// `eprintln!` through [`error_line`]: never panics.
macro_rules! errln {
    () => {
        $crate::output::error_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::error_line(format_args!($($arg)*))
    };
}
pub(crate) use errln;

/// `eprint!` through [`error_text`]: never panics.
macro_rules! errprint {
    ($($arg:tt)*) => {
        $crate::output::error_text(format_args!($($arg)*))
    };
}
pub(crate) use errprint;

/// The log's writer: stderr, and nowhere once stderr is gone. Every write reports success, so
/// the subscriber neither retries nor reports the failure (see the module docs).
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
