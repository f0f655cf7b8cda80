//! `mycelium stats --watch`: a live table of a running broker's topics, redrawn every
//! interval, until `q`, Esc or Ctrl-C.
//!
//! - Refuses (exit 2) when stdout is not a terminal: a redrawn screen is no use to a script,
//!   which wants `stats --json`.
//! - Raw mode, the alternate screen and the hidden cursor are undone on every way out: a key,
//!   an error, the broker going away, and a panic (a hook puts the terminal back before the
//!   panic message is printed).
//! - The broker going away, or not answering within [`ANSWER_TIMEOUT`], ends the watch with
//!   an error (exit 1) instead of a frozen table.
//! - Rates come from `stats_rates`; this file only asks, waits and draws.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};
use mycelium_client::{BrokerStats, Client};

use super::stats_rates::{rows, TopicRow};
use crate::output::errln;

/// How long one `Stats` request may take before the watch gives up on the broker.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// What `stats --watch` exits with when stdout is not a terminal (a usage error, as clap's).
const NOT_A_TERMINAL: u8 = 2;

/// Runs the live table against the broker at `path`, redrawn every `interval`.
pub(crate) fn watch(path: &std::path::Path, interval: Duration) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() {
        errln!("error: stats --watch draws a live table and needs a terminal on stdout; use `mycelium stats --json` in scripts");
        return Ok(ExitCode::from(NOT_A_TERMINAL));
    }
    // Its own worker thread keeps the connection served (heartbeats) while the watch waits
    // for keys.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = runtime
        .block_on(Client::connect(path))
        .map_err(crate::report::connect_failed)?;
    let ask = || -> anyhow::Result<BrokerStats> {
        runtime.block_on(async {
            match tokio::time::timeout(ANSWER_TIMEOUT, client.stats()).await {
                Ok(Ok(stats)) => Ok(stats),
                Ok(Err(error)) => Err(anyhow::Error::new(error).context("the broker went away")),
                Err(_) => Err(anyhow::anyhow!(
                    "the broker did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                )),
            }
        })
    };
    let screen = Screen::enter()?;
    let mut previous: Option<(Instant, BrokerStats)> = None;
    loop {
        let stats = ask()?;
        let now = Instant::now();
        let table = match &previous {
            Some((at, before)) => rows(
                Some(&before.topics),
                &stats.topics,
                now.duration_since(*at).as_secs_f64(),
            ),
            None => rows(None, &stats.topics, 0.0),
        };
        let lines = render(path, interval, &stats, &table);
        screen.draw(&lines)?;
        previous = Some((now, stats));
        let next = now + interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !event::poll(left).context("reading the terminal")? {
                break;
            }
            match event::read().context("reading the terminal")? {
                Event::Key(key) if quits(&key) => {
                    drop(screen);
                    runtime.block_on(client.close()).ok();
                    return Ok(ExitCode::SUCCESS);
                }
                Event::Resize(..) => screen.draw(&lines)?,
                _ => {}
            }
        }
    }
}

fn quits(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

fn rate(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(r) if r >= 10.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

/// The screen's lines: broker-wide figures, then one row per topic.
fn render(
    path: &std::path::Path,
    interval: Duration,
    stats: &BrokerStats,
    table: &[TopicRow],
) -> Vec<String> {
    let c = &stats.config;
    let mut lines = vec![
        format!(
            "mycelium stats --watch  {}  every {:.1} s  (q to quit)",
            path.display(),
            interval.as_secs_f64()
        ),
        format!(
            "connections {}  uptime {:.0} s  topics {}  config generation {}, {} reload(s){}",
            stats.connections,
            stats.uptime_ms as f64 / 1000.0,
            table.len(),
            c.generation,
            c.reloads,
            if c.last_error.is_empty() {
                ""
            } else {
                "  LAST RELOAD FAILED"
            }
        ),
        String::new(),
    ];
    let width = table.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    lines.push(format!(
        "{:<width$}  {:<7}  {:<8}  {:>5}  {:>5}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}",
        "TOPIC",
        "ROUTING",
        "KIND",
        "SUBS",
        "SHM",
        "PUB/S",
        "DELIV/S",
        "DROPPED",
        "DROP/S",
        "QUEUED"
    ));
    for r in table {
        lines.push(format!(
            "{:<width$}  {:<7}  {:<8}  {:>5}  {:>5}  {:>10}  {:>10}  {:>10}  {:>8}  {:>8}",
            r.name,
            r.routing,
            if r.dynamic { "dynamic" } else { "declared" },
            r.subscribers,
            r.shm_subscribers,
            rate(r.publish_rate),
            rate(r.deliver_rate),
            r.dropped,
            rate(r.drop_rate),
            r.queued,
        ));
    }
    lines
}

/// The terminal in raw mode on the alternate screen; put back as it was when dropped, and
/// by a panic hook before a panic's message.
struct Screen;

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        cursor::Show,
        terminal::LeaveAlternateScreen
    );
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        terminal::enable_raw_mode().context("putting the terminal in raw mode")?;
        // From here on the screen exists, so every later failure restores through its drop.
        let screen = Screen;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("preparing the terminal")?;
        Ok(screen)
    }

    fn draw(&self, lines: &[String]) -> anyhow::Result<()> {
        // A terminal that reports no size (0 x 0, as a fresh pseudo-terminal does) is drawn
        // as if it had a usual one.
        let (columns, rows) = match terminal::size() {
            Ok((c, r)) if c > 0 && r > 0 => (c, r),
            _ => (120, 40),
        };
        let mut out = std::io::stdout().lock();
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        for line in lines.iter().take(usize::from(rows)) {
            let shown: String = line.chars().take(usize::from(columns)).collect();
            // Raw mode: a line break is a carriage return and a line feed.
            write!(out, "{shown}\r\n")?;
        }
        out.flush()?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}
