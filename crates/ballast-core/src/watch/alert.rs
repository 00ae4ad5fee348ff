//! What a notice says: the JSON body webhooks and commands get (the
//! incident, and the report when escalated or rolled back), the one-line
//! text, and the
//! Slack payload. The report tells what, where, since when, what was
//! tried and the container's last log lines; everything sent passes
//! through the redaction layer, so no secret value ever leaves in an
//! alert.

use serde::Serialize;

use super::incident::{Event, Notice};
use super::{rfc3339, Key, Kind, Millis, Subject};

/// One alert, as channels receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub service: String,
    pub event: Event,
    /// When this was sent (RFC 3339).
    pub at: String,
    pub incident: Summary,
    /// With escalations and rollbacks: the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// The alert in one line (the Slack text's first line).
    pub text: String,
}

/// An incident as alerts show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub key: Key,
    /// "role web failing on 10.0.0.1".
    pub what: String,
    pub cause: String,
    /// When it was first seen (RFC 3339).
    pub since: String,
    pub tried: Vec<String>,
    /// Watch gave up restarting: a human must look.
    pub given_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What an escalation adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub host: Option<String>,
    pub role: Option<String>,
    pub accessory: Option<String>,
    pub container: Option<String>,
    /// How long it has been open, in words ("6m 30s").
    pub open_for: String,
    /// The container's last log lines, secret values redacted.
    pub log: Vec<String>,
}

impl Alert {
    /// The alert for `notice` of `service`, with the report's log lines
    /// (read by the caller; ignored unless escalated).
    pub fn new(service: &str, notice: &Notice, log: Vec<String>) -> Alert {
        let i = &notice.incident;
        let what = i.key.to_string();
        let summary = Summary {
            key: i.key.clone(),
            what: what.clone(),
            cause: i.cause.clone(),
            since: rfc3339(i.opened_at),
            tried: i.tried.clone(),
            given_up: i.given_up,
            hint: i.hint.clone(),
        };
        let report = notice.event.reports().then(|| Report {
            host: i.key.host.clone(),
            role: match &i.key.subject {
                Some(Subject::Role(r)) => Some(r.clone()),
                _ => None,
            },
            accessory: match &i.key.subject {
                Some(Subject::Accessory(a)) => Some(a.clone()),
                _ => None,
            },
            container: i.container.clone(),
            open_for: open_for(i.opened_at, notice.at),
            log: log
                .iter()
                .map(|l| crate::redact::redact(l).into_owned())
                .collect(),
        });
        let text = match notice.event {
            Event::Opened => format!("[{service}] {what}: {}", i.cause),
            Event::Escalated if i.given_up => format!(
                "[{service}] ESCALATED: {what} since {}: {}; watch gave up restarting it",
                summary.since, i.cause
            ),
            Event::Escalated => format!(
                "[{service}] ESCALATED: {what} for {}: {}",
                open_for(i.opened_at, notice.at),
                i.cause
            ),
            Event::Recovered => format!(
                "[{service}] RECOVERED: {what} (after {})",
                open_for(i.opened_at, notice.at)
            ),
            Event::RolledBack => format!("[{service}] ROLLED BACK: {what}: {}", i.cause),
            Event::RollbackFailed => {
                format!("[{service}] ROLLBACK FAILED: {what}: {}", i.cause)
            }
        };
        Alert {
            service: service.to_string(),
            event: notice.event,
            at: rfc3339(notice.at),
            incident: summary,
            report,
            text: crate::redact::redact(&text).into_owned(),
        }
    }

    /// The JSON body, secret values redacted.
    pub fn json(&self) -> String {
        let body = serde_json::to_string(self).expect("alerts serialize");
        crate::redact::redact(&body).into_owned()
    }

    /// A Slack-compatible payload: the text, and for escalations the
    /// report as a few more lines.
    pub fn slack(&self) -> String {
        let mut text = self.text.clone();
        if let Some(r) = &self.report {
            text.push_str(&format!("\nsince {} ({})", self.incident.since, r.open_for));
            if !self.incident.tried.is_empty() {
                text.push_str(&format!("\ntried: {}", self.incident.tried.join("; ")));
            }
            if let Some(h) = &self.incident.hint {
                text.push_str(&format!("\nhint: {h}"));
            }
            if !r.log.is_empty() {
                text.push_str(&format!("\n```\n{}\n```", r.log.join("\n")));
            }
        }
        crate::redact::redact(&serde_json::json!({ "text": text }).to_string()).into_owned()
    }
}

fn open_for(from: Millis, to: Millis) -> String {
    let secs = to.saturating_sub(from) / 1000;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// Whether an incident is about a host (no container's log lines).
pub fn wants_log(key: &Key) -> bool {
    key.kind == Kind::ContainerFailing
}

#[cfg(test)]
mod tests {
    use super::super::incident::Incident;
    use super::*;

    fn incident() -> Incident {
        let key = Key::container("h1", &Subject::Role("web".into()));
        Incident {
            tried: vec!["2025-12-01T10:00:01Z: start shop-web-v1 (exited with code 137)".into()],
            container: Some("shop-web-v1".into()),
            alerted: true,
            ..Incident::new(key, "exited with code 137", 1_764_583_200_000)
        }
    }

    #[test]
    fn openings_and_recoveries_say_what_and_where() {
        let n = Notice {
            event: Event::Opened,
            incident: incident(),
            at: 1_764_583_200_000,
        };
        let a = Alert::new("shop", &n, vec![]);
        assert_eq!(
            a.text,
            "[shop] role web failing on h1: exited with code 137"
        );
        assert_eq!(a.incident.since, "2025-12-01T10:00:00Z");
        assert!(a.report.is_none());
        let n = Notice {
            event: Event::Recovered,
            at: n.at + 95_000,
            ..n
        };
        let a = Alert::new("shop", &n, vec![]);
        assert_eq!(
            a.text,
            "[shop] RECOVERED: role web failing on h1 (after 1m 35s)"
        );
        let v: serde_json::Value = serde_json::from_str(&a.json()).unwrap();
        assert_eq!(v["event"], "recovered");
        assert_eq!(v["incident"]["key"]["kind"], "container_failing");
        assert_eq!(v["incident"]["key"]["subject"]["role"], "web");
    }

    #[test]
    fn escalations_carry_the_report_with_log_lines() {
        let n = Notice {
            event: Event::Escalated,
            incident: incident(),
            at: 1_764_583_200_000 + 300_000,
        };
        let a = Alert::new("shop", &n, vec!["boom".into()]);
        assert_eq!(
            a.text,
            "[shop] ESCALATED: role web failing on h1 for 5m: exited with code 137"
        );
        let r = a.report.as_ref().unwrap();
        assert_eq!(r.host.as_deref(), Some("h1"));
        assert_eq!(r.role.as_deref(), Some("web"));
        assert_eq!(r.log, ["boom"]);
        let slack: serde_json::Value = serde_json::from_str(&a.slack()).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(text.starts_with("[shop] ESCALATED"), "{text}");
        assert!(
            text.contains("tried: 2025-12-01T10:00:01Z: start shop-web-v1"),
            "{text}"
        );
        assert!(text.ends_with("```\nboom\n```"), "{text}");
    }

    #[test]
    fn a_rollback_by_watch_is_an_event_of_its_own_with_the_report() {
        for (event, word, head) in [
            (Event::RolledBack, "rolled_back", "[shop] ROLLED BACK: "),
            (
                Event::RollbackFailed,
                "rollback_failed",
                "[shop] ROLLBACK FAILED: ",
            ),
        ] {
            let n = Notice {
                event,
                incident: incident(),
                at: 1_764_583_200_000 + 60_000,
            };
            let a = Alert::new("shop", &n, vec![]);
            assert!(a.text.starts_with(head), "{}", a.text);
            assert!(a.report.is_some());
            let v: serde_json::Value = serde_json::from_str(&a.json()).unwrap();
            assert_eq!(v["event"], word);
        }
    }
}
