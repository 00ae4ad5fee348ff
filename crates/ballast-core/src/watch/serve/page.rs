//! `GET /`: the status page, readable at a glance: a table of hosts ×
//! roles and accessories (version, health, state, uptime, restarts), then
//! the open incidents and since when. Plain HTML that refreshes itself,
//! no JavaScript; every value from the hosts is escaped.
//!
//! A host that does not answer is the loudest thing on the page: a red
//! "down" cell with the reason, its containers shown as unknown (not as
//! whatever they were last seen to be), and the summary line in red.
//!
//! Rows carry `data-host` and `data-state` (`up`, `down`), container cells
//! `data-kind` (`role`, `accessory`), `data-name` and `data-condition`
//! (`healthy`, `pending`, `failing`, `stopped`, `unknown`), the labels the
//! metrics use, so a browser test can read the page without parsing its
//! wording.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use super::super::assess::Condition;
use super::super::status::{ContainerStatus, HostStatus, Status};
use super::super::{rfc3339, Millis, Subject};
use crate::release::ContainerState;

/// `text` safe inside HTML text and attribute values.
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

/// A span of milliseconds as people read it: `45s`, `3m 12s`, `2h 5m`,
/// `4d 3h`.
pub fn ago(ms: Millis) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:left;vertical-align:top}\
.healthy,.up{background:#dff2df}.pending{background:#fff3c4}\
.failing,.down{background:#f9d2d2}.stopped,.unknown{background:#eee;color:#555}\
td.down{border-left:0.4em solid #c62828}td.up{border-left:0.4em solid #2e7d32}\
.word{font-weight:bold;text-transform:uppercase}.down .word,p.down{color:#b71c1c}\
.up .word{color:#1b5e20}p.summary{padding:0.3em 0.6em}small{color:#555}";

/// The page for `status`, seen at `now`, reloading every `refresh`.
pub fn render(status: &Status, now: Millis, refresh: Duration) -> String {
    let service = escape(&status.service);
    let mut p = String::new();
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{}\"><title>{service}: ballast watch</title>\
<style>{STYLE}</style></head><body>\n<h1>{service}</h1>\n",
        refresh.as_secs().max(1)
    );
    let up = status.hosts.values().filter(|h| h.up).count();
    let look = match status.at {
        0 => "no look yet".to_string(),
        at => format!(
            "last look {} ({} ago)",
            rfc3339(at),
            ago(now.saturating_sub(at))
        ),
    };
    // Red as soon as one host is down: the line read first says so.
    let class = match up < status.hosts.len() {
        true => "summary down",
        false => "summary",
    };
    let _ = writeln!(
        p,
        "<p class=\"{class}\">{up} of {} hosts up · {} incidents open · {look}</p>",
        status.hosts.len(),
        status.incidents.len()
    );
    if let Some(holder) = &status.locked {
        let _ = writeln!(
            p,
            "<p class=\"pending\">Standing aside: the deploy lock is {}.</p>",
            escape(holder)
        );
    }
    hosts(&mut p, status, now);
    incidents(&mut p, status, now);
    p.push_str("</body></html>\n");
    p
}

fn subject_name(s: &Subject) -> String {
    match s {
        Subject::Role(r) => escape(r),
        Subject::Accessory(a) => format!("{} <small>accessory</small>", escape(a)),
    }
}

/// The `data-kind` and `data-name` attributes of a subject's cell: the
/// `kind` and `name` labels of its metrics.
fn subject_data(s: &Subject) -> String {
    let (kind, name) = match s {
        Subject::Role(r) => ("role", r),
        Subject::Accessory(a) => ("accessory", a),
    };
    format!("data-kind=\"{kind}\" data-name=\"{}\"", escape(name))
}

fn hosts(p: &mut String, status: &Status, now: Millis) {
    let subjects: BTreeSet<&Subject> = status.containers.iter().map(|c| &c.subject).collect();
    let cells: BTreeMap<(&str, &Subject), &ContainerStatus> = status
        .containers
        .iter()
        .map(|c| ((c.host.as_str(), &c.subject), c))
        .collect();
    p.push_str("<h2>Hosts</h2>\n<table><thead><tr><th>host</th>");
    for s in &subjects {
        let _ = write!(p, "<th>{}</th>", subject_name(s));
    }
    p.push_str("</tr></thead><tbody>\n");
    for (host, h) in &status.hosts {
        let (word, class) = if h.up { ("up", "up") } else { ("down", "down") };
        let why = h
            .error
            .as_deref()
            .map(|e| format!("<br><small>{}</small>", escape(e)))
            .unwrap_or_default();
        let _ = write!(
            p,
            "<tr data-host=\"{0}\" data-state=\"{word}\"><td class=\"{class}\"><b>{0}</b><br><span class=\"word\">{word}</span>{why}{1}</td>",
            escape(host),
            host_details(status, host, h)
        );
        for s in &subjects {
            match cells.get(&(host.as_str(), *s)) {
                Some(c) => cell(p, c, now),
                // What ran there before it stopped answering is not known
                // now, and the page does not pretend it is.
                None if !h.up => {
                    let _ = write!(
                        p,
                        "<td class=\"unknown\" {} data-condition=\"unknown\">unknown<br><small>host not answering</small></td>",
                        subject_data(s)
                    );
                }
                None => p.push_str("<td></td>"),
            }
        }
        p.push_str("</tr>\n");
    }
    p.push_str("</tbody></table>\n");
}

/// What else the last look knew of a host that answered: its Docker
/// disk and its proxy.
fn host_details(status: &Status, host: &str, h: &HostStatus) -> String {
    let mut out = String::new();
    if !h.up {
        return out;
    }
    if let Some(used) = h.disk_used_percent {
        let _ = write!(
            out,
            "<br><small data-disk=\"{used}\">Docker disk {used}% used</small>"
        );
    }
    if let Some(proxy) = status.proxies.get(host) {
        let (word, class) = if proxy.up {
            ("up", "")
        } else {
            ("down", " class=\"down\"")
        };
        let _ = write!(
            out,
            "<br><small{class} data-proxy=\"{word}\">proxy {word}</small>"
        );
    }
    out
}

fn cell(p: &mut String, c: &ContainerStatus, now: Millis) {
    let (class, health) = match &c.condition {
        Condition::Healthy => ("healthy", "healthy".to_string()),
        Condition::Pending => ("pending", "starting".to_string()),
        Condition::Failing(cause) => ("failing", cause.describe()),
        Condition::Stopped => ("stopped", "stopped on purpose".to_string()),
    };
    let version = c.version.as_deref().unwrap_or("");
    let state = c.state.map_or("no container", ContainerState::word);
    let uptime = match (c.state, c.started_at) {
        (Some(ContainerState::Running), Some(at)) => {
            format!(", up {}", ago(now.saturating_sub(at)))
        }
        _ => String::new(),
    };
    let mut notes = String::new();
    if c.restarts > 0 {
        let _ = write!(notes, "<br><small>{} recent restarts</small>", c.restarts);
    }
    if c.breaker_open {
        notes.push_str("<br><small>breaker open: left to a human</small>");
    }
    let _ = write!(
        p,
        "<td class=\"{class}\" {} data-condition=\"{class}\"><b>{}</b> {}<br>{state}{uptime}{notes}</td>",
        subject_data(&c.subject),
        escape(version),
        escape(&health)
    );
}

fn incidents(p: &mut String, status: &Status, now: Millis) {
    p.push_str("<h2>Open incidents</h2>\n");
    if status.incidents.is_empty() {
        p.push_str("<p>None.</p>\n");
        return;
    }
    p.push_str("<table><thead><tr><th>what</th><th>since</th><th>cause</th><th>tried</th></tr></thead><tbody>\n");
    for i in &status.incidents {
        let mut notes = Vec::new();
        if i.given_up {
            notes.push("watch gave up");
        }
        if i.escalated_at.is_some() {
            notes.push("escalated");
        }
        if i.inhibited {
            notes.push("silent: a larger problem speaks for it");
        }
        if i.clear_since.is_some() {
            notes.push("recovering");
        }
        let notes = match notes.is_empty() {
            true => String::new(),
            false => format!("<br><small>{}</small>", notes.join(", ")),
        };
        let hint = i
            .hint
            .as_deref()
            .map(|h| format!("<br><small>{}</small>", escape(h)))
            .unwrap_or_default();
        let tried = match i.tried.last() {
            Some(last) => format!("{} ({} in all)", escape(last), i.tried.len()),
            None => "nothing yet".into(),
        };
        let _ = writeln!(
            p,
            "<tr class=\"incident\"><td class=\"failing\">{}{notes}</td><td>{} <small>({} ago)</small></td><td>{}{hint}</td><td>{tried}</td></tr>",
            escape(&i.key.to_string()),
            rfc3339(i.opened_at),
            ago(now.saturating_sub(i.opened_at)),
            escape(&i.cause),
        );
    }
    p.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_be_markup() {
        assert_eq!(
            escape("<b a='1'>\"x\" & y</b>"),
            "&lt;b a=&#39;1&#39;&gt;&quot;x&quot; &amp; y&lt;/b&gt;"
        );
    }

    #[test]
    fn spans_read_as_people_write_them() {
        let cases = [
            (999, "0s"),
            (45_000, "45s"),
            (192_000, "3m 12s"),
            (7_500_000, "2h 5m"),
            (356_400_000, "4d 3h"),
        ];
        for (ms, text) in cases {
            assert_eq!(ago(ms), text);
        }
    }

    #[test]
    fn the_page_shows_hosts_roles_and_open_incidents() {
        let status = super::super::sample();
        let page = render(&status, status.at + 5_000, Duration::from_secs(5));
        let has = |part: &str| assert!(page.contains(part), "no {part:?} in:\n{page}");
        has("<meta http-equiv=\"refresh\" content=\"5\">");
        has("<p class=\"summary down\">1 of 2 hosts up · 2 incidents open · last look 2023-11-14T22:13:20Z (5s ago)</p>");
        // The host's error, escaped, never as markup; what runs there is
        // unknown while it does not answer.
        has("<tr data-host=\"b\" data-state=\"down\"><td class=\"down\"><b>b</b><br><span class=\"word\">down</span><br><small>ssh: &lt;refused&gt; &amp; &quot;gone&quot;</small></td>\
<td class=\"unknown\" data-kind=\"role\" data-name=\"web\" data-condition=\"unknown\">unknown<br><small>host not answering</small></td>\
<td class=\"unknown\" data-kind=\"accessory\" data-name=\"db\" data-condition=\"unknown\">unknown<br><small>host not answering</small></td></tr>");
        // A host that answered: its Docker disk and its proxy too.
        has("<tr data-host=\"a\" data-state=\"up\"><td class=\"up\"><b>a</b><br><span class=\"word\">up</span>\
<br><small data-disk=\"42\">Docker disk 42% used</small><br><small data-proxy=\"up\">proxy up</small></td>");
        assert!(!page.contains("<refused>"));
        has("<td class=\"healthy\" data-kind=\"role\" data-name=\"web\" data-condition=\"healthy\"><b>v1</b> healthy<br>running, up 1h 1m<br><small>1 recent restarts</small></td>");
        has("<td class=\"failing\" data-kind=\"accessory\" data-name=\"db\" data-condition=\"failing\"><b></b> exited with code 137<br>exited<br><small>3 recent restarts</small><br><small>breaker open: left to a human</small></td>");
        // Both open incidents, with since when.
        has("<td class=\"failing\">host b down</td><td>2023-11-14T22:11:20Z <small>(2m 5s ago)</small></td><td>no answer within 3s</td>");
        has("<td class=\"failing\">accessory db failing on a</td><td>2023-11-14T22:12:50Z <small>(35s ago)</small></td>");
        assert!(!page.contains("<script"));
    }

    #[test]
    fn the_summary_is_red_only_while_a_host_is_down() {
        let mut status = super::super::sample();
        let page = render(&status, status.at, Duration::from_secs(5));
        assert!(page.contains("<p class=\"summary down\">1 of 2"), "{page}");
        status.hosts.get_mut("b").unwrap().up = true;
        let page = render(&status, status.at, Duration::from_secs(5));
        assert!(page.contains("<p class=\"summary\">2 of 2"), "{page}");
    }

    #[test]
    fn no_incident_says_so() {
        let mut status = super::super::sample();
        status.incidents.clear();
        let page = render(&status, status.at, Duration::from_secs(5));
        assert!(
            page.contains("<h2>Open incidents</h2>\n<p>None.</p>"),
            "{page}"
        );
    }
}
