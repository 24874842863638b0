//! A [`Status`] as the exporter's page `/`: server-rendered HTML with its CSS inline, no
//! JavaScript and nothing fetched from elsewhere, one column on a phone, refreshing itself.

use std::fmt::Write;

use super::{expected, percent, Level, Row, Service, Status};

/// What the page shows besides the status: the landing page's links and collectors.
pub struct Page<'a> {
    pub telemetry_path: &'a str,
    /// Every registered collector: name, whether it runs, what it publishes.
    pub collectors: Vec<(&'static str, bool, &'static str)>,
    /// Seconds between the page's own reloads.
    pub refresh_seconds: u32,
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:.5rem;color:#222;background:#fafafa}\
h1{font-size:1.3rem;margin:.3rem 0}h2{font-size:1.05rem;margin:1.2rem 0 .3rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%}td,th{padding:.25rem .4rem;text-align:left;vertical-align:top;font-size:.9rem}\
tr{border-bottom:1px solid #eee}th{font-weight:600;color:#555}\
.bar{position:relative;background:#e4e4e4;height:.8rem;min-width:5rem;border-radius:2px}\
.fill{height:100%;border-radius:2px}.limit{position:absolute;top:-2px;bottom:-2px;width:2px;background:#333}\
.ok .fill{background:#3a3}.advice .fill{background:#d90}.alert .fill{background:#c22}.unknown .fill{background:#999}\
.level{font-weight:700;text-transform:uppercase;font-size:.8rem}.ok .level{color:#282}.advice .level{color:#a60}\
.alert .level{color:#c22}.unknown .level{color:#777}.plan{color:#666;font-size:.8rem}.percent{white-space:nowrap}\
.badge{padding:.1rem .5rem;border-radius:3px;color:#fff}.badge.ok{background:#3a3}.badge.advice{background:#d90}\
.badge.alert{background:#c22}.badge.unknown{background:#999}\
@media (max-width:40rem){thead{display:none}tr{display:block;padding:.3rem 0}td{display:inline-block;padding:.1rem .3rem}\
td.name{font-weight:600}td.wide{display:block}}";

/// The whole page.
pub fn render(status: &Status, page: &Page) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{}\">\
         <title>stack_exporter: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>stack_exporter {} <span id=\"level\" class=\"badge {}\">{}</span></h1>\n\
         <p>Profile <b id=\"profile\">{}</b>: host, services against their planned budgets, databases \
         and Redis. <a href=\"{}\">Metrics</a> · <a href=\"/-/healthy\">Health</a></p>\n",
        page.refresh_seconds,
        escape(&status.profile),
        escape(&status.version),
        status.level.name(),
        status.level.name(),
        escape(&status.profile),
        escape(page.telemetry_path),
    );
    rows(&mut out, "host", "Host", &status.host);
    services(&mut out, &status.services);
    rows(
        &mut out,
        "datastores",
        "Databases and Redis",
        &status.datastores,
    );
    rows(&mut out, "exposure", "Exposure", &status.exposure);
    rows(&mut out, "backups", "Backups", &status.backups);
    findings(&mut out, status);
    if !status.failed_collectors.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"unknown\">Collectors that failed (their rows are missing): {}</p>",
            escape(&status.failed_collectors.join(", "))
        );
    }
    if let Some(window) = status.cpu_window_seconds {
        let _ = writeln!(
            out,
            "<p class=\"plan\">CPU over the last {window:.0} s.</p>"
        );
    }
    out.push_str("<h2>Collectors</h2>\n<ul id=\"collectors\">\n");
    for (name, on, help) in &page.collectors {
        let state = if *on { "on" } else { "off" };
        let _ = writeln!(out, "<li><b>{name}</b> ({state}): {}</li>", escape(help));
    }
    out.push_str("</ul>\n</body></html>\n");
    out
}

fn bar(ratio: Option<f64>, limit: Option<f64>) -> String {
    let Some(ratio) = ratio else {
        return String::new();
    };
    let width = (ratio.clamp(0.0, 1.0) * 100.0).round();
    let mark = limit
        .filter(|l| *l < 1.0)
        .map(|l| {
            format!(
                "<div class=\"limit\" style=\"left:{:.0}%\"></div>",
                l * 100.0
            )
        })
        .unwrap_or_default();
    format!("<div class=\"bar\"><div class=\"fill\" style=\"width:{width}%\"></div>{mark}</div>")
}

fn level_cell(level: Level) -> String {
    format!("<td class=\"level\">{}</td>", level.name())
}

fn rows(out: &mut String, id: &str, title: &str, rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>{title}</h2>\n<table id=\"{id}\"><thead><tr><th></th><th>figure</th><th>use</th>\
         <th></th><th>now</th><th>plan</th></tr></thead><tbody>"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "<tr class=\"{}\">{}<td class=\"name\">{}</td><td class=\"wide\">{}</td><td class=\"percent\">{}</td>\
             <td>{}</td><td class=\"plan\">{}</td></tr>",
            row.level.name(),
            level_cell(row.level),
            escape(&row.name),
            bar(row.ratio, row.limit),
            row.ratio.map(percent).unwrap_or_default(),
            escape(&row.value),
            escape(&row.plan),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn services(out: &mut String, services: &[Service]) {
    if services.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Services</h2>\n<table id=\"services\"><thead><tr><th></th><th>service</th><th>up</th>\
         <th>instances</th><th>processes</th><th>memory (PSS + swap) of budget</th><th></th>\
         <th>CPU</th></tr></thead><tbody>\n",
    );
    for s in services {
        let memory = s.memory_of_budget();
        let cpu = s.cpu_of_budget().unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr id=\"service-{name}\" class=\"{level}\">{}<td class=\"name\">{name}</td>\
             <td class=\"up\">{}</td><td class=\"instances\">{}/{}</td><td class=\"processes\">{}/{}</td>\
             <td class=\"wide\">{}{memory}</td><td class=\"budget\">{}</td><td class=\"cpu\">{cpu}</td></tr>",
            level_cell(s.level),
            if s.up { "yes" } else { "no" },
            s.instances,
            expected(s.expected_instances),
            s.processes,
            expected(s.expected_processes),
            bar(s.budget_ratio, Some(1.0)),
            s.budget_ratio.map(percent).unwrap_or_default(),
            name = escape(&s.name),
            level = s.level.name(),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn findings(out: &mut String, status: &Status) {
    if status.findings.is_empty() {
        return;
    }
    out.push_str("<h2>What the plan says</h2>\n<ul id=\"findings\">\n");
    for f in &status.findings {
        let action = f
            .action
            .map(|a| format!(" <b>Plan: {}.</b>", escape(a)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<li class=\"{}\"><span class=\"level\">{}</span> {}: {} <span class=\"plan\">({}, {})</span>{action}</li>",
            f.level.name(),
            f.level.name(),
            escape(&f.subject),
            escape(f.summary),
            f.alert,
            f.rows,
        );
    }
    out.push_str("</ul>\n");
}

/// Text made safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
