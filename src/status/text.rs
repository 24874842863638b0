//! A [`Status`] as one screen of text: colour and block bars for a terminal, plain ASCII (no
//! escape code) when piped or with NO_COLOR; or as JSON for scripts.

use std::fmt::Write;

use super::{expected, percent, Level, Row, Service, Status};

/// Width of a bar, in characters.
const BAR: usize = 20;

/// How the text is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// ANSI colours and block characters.
    Colour,
    /// ASCII only: what a pipe, a cron mail or a log file gets.
    Plain,
}

impl Style {
    /// Colour when `stdout_is_terminal` and NO_COLOR (https://no-color.org) is unset or empty.
    pub fn detect(stdout_is_terminal: bool, no_color: Option<&str>) -> Style {
        let no_color = no_color.is_some_and(|v| !v.is_empty());
        if stdout_is_terminal && !no_color {
            Style::Colour
        } else {
            Style::Plain
        }
    }

    fn paint(self, level: Level, text: &str) -> String {
        let code = match level {
            Level::Ok => "32",
            Level::Unknown => "2",
            Level::Advice => "33",
            Level::Alert => "1;31",
        };
        match self {
            Style::Colour => format!("\x1b[{code}m{text}\x1b[0m"),
            Style::Plain => text.to_string(),
        }
    }

    fn heading(self, text: &str) -> String {
        match self {
            Style::Colour => format!("\x1b[1m{text}\x1b[0m"),
            Style::Plain => text.to_string(),
        }
    }

    /// `ratio` as a bar of [`BAR`] characters, the threshold `limit` marked with `|`.
    fn bar(self, ratio: Option<f64>, limit: Option<f64>, level: Level) -> String {
        let Some(ratio) = ratio else {
            return " ".repeat(BAR + 2);
        };
        let filled = ((ratio.clamp(0.0, 1.0) * BAR as f64).round()) as usize;
        let mark = limit
            .filter(|l| *l < 1.0)
            .map(|l| (l * BAR as f64).round() as usize);
        let (full, empty) = match self {
            Style::Colour => ('█', '░'),
            Style::Plain => ('#', '.'),
        };
        let cells: String = (0..BAR)
            .map(|i| match (i < filled, Some(i) == mark) {
                (false, true) => '|',
                (true, _) => full,
                (false, false) => empty,
            })
            .collect();
        format!("[{}]", self.paint(level, &cells))
    }
}

/// The status as one screen of text.
pub fn render(status: &Status, style: Style) -> String {
    let mut out = String::new();
    let level = style.paint(status.level, &status.level.name().to_uppercase());
    let _ = writeln!(
        out,
        "{} {} · profile {} · {level}",
        style.heading("stack_exporter"),
        status.version,
        status.profile
    );
    section(&mut out, style, "HOST", &status.host);
    services(&mut out, style, &status.services);
    section(&mut out, style, "DATABASES AND REDIS", &status.datastores);
    section(&mut out, style, "EXPOSURE", &status.exposure);
    section(&mut out, style, "BACKUPS", &status.backups);
    if !status.findings.is_empty() {
        let _ = writeln!(out, "\n{}", style.heading("WHAT THE PLAN SAYS"));
        for finding in &status.findings {
            let mark = style.paint(finding.level, mark(finding.level));
            let _ = write!(
                out,
                "  {mark} {}: {} ({}, {})",
                finding.subject, finding.summary, finding.alert, finding.rows
            );
            if let Some(action) = finding.action {
                let _ = write!(out, " Plan: {action}.");
            }
            out.push('\n');
        }
    }
    if !status.failed_collectors.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.paint(
                Level::Unknown,
                &format!(
                    "collectors that failed (their rows are missing): {}",
                    status.failed_collectors.join(", ")
                )
            )
        );
    }
    out
}

/// The status as JSON (the same fields as the page shows).
pub fn json(status: &Status) -> String {
    let mut text = serde_json::to_string_pretty(status).expect("a status serializes");
    text.push('\n');
    text
}

fn mark(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Unknown => "??",
        Level::Advice => "->",
        Level::Alert => "!!",
    }
}

fn section(out: &mut String, style: Style, title: &str, rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", style.heading(title));
    for row in rows {
        let share = row.ratio.map_or(String::new(), percent);
        let _ = writeln!(
            out,
            "  {} {:<26} {} {:>5}  {}  ({})",
            style.paint(row.level, mark(row.level)),
            row.name,
            style.bar(row.ratio, row.limit, row.level),
            share,
            row.value,
            row.plan
        );
    }
}

fn services(out: &mut String, style: Style, services: &[Service]) {
    if services.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{}",
        style.heading(
            "SERVICES                       up   inst   procs  memory (PSS + swap) of budget"
        )
    );
    for s in services {
        let budget = s.memory_of_budget();
        let cpu = s
            .cpu_of_budget()
            .map_or(String::new(), |cpu| format!("CPU {cpu}"));
        let _ = writeln!(
            out,
            "  {} {:<26} {:<4} {:>6} {:>6}  {} {:>5}  {budget}  {cpu}{}",
            style.paint(s.level, mark(s.level)),
            s.name,
            if s.up { "yes" } else { "no" },
            format!("{}/{}", s.instances, expected(s.expected_instances)),
            format!("{}/{}", s.processes, expected(s.expected_processes)),
            style.bar(s.budget_ratio, Some(1.0), s.level),
            s.budget_ratio.map_or(String::new(), percent),
            if s.note.is_empty() {
                String::new()
            } else {
                format!("  {}", s.note)
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert_eq!(Style::detect(true, None), Style::Colour);
        assert_eq!(Style::detect(true, Some("")), Style::Colour);
        assert_eq!(Style::detect(true, Some("1")), Style::Plain);
        assert_eq!(Style::detect(false, None), Style::Plain);
    }

    #[test]
    fn bars_mark_the_threshold() {
        let bar = Style::Plain.bar(Some(0.5), Some(0.85), Level::Ok);
        assert_eq!(bar, "[##########.......|..]");
        assert!(!bar.contains('\x1b'));
        assert!(Style::Colour
            .bar(Some(0.5), None, Level::Alert)
            .contains("\x1b[1;31m"));
    }
}
