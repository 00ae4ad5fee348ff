//! Waiting for a new container to be healthy: an HTTP check on its port
//! (reached through its host), Docker's own health status, or simply staying
//! up. A container that exits while we wait fails at once.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::spec::HealthMode;

/// Waits until `container` on `host` is healthy by `mode`, within `deadline`.
pub async fn await_healthy(
    host: &Host,
    container: &str,
    mode: &HealthMode,
    deadline: Duration,
) -> Result<()> {
    let step = format!("wait until {container} is healthy");
    let started = Instant::now();
    let mut last;
    loop {
        let state = container_state(host, container).await?;
        if !state.running {
            return Err(Error::failed(
                &step,
                format_args!("the container stopped ({})", state.summary),
            )
            .on(host.name())
            .hint("see its last log lines above; fix the app or its config, then deploy again"));
        }
        let pause = match mode {
            HealthMode::Http {
                port,
                path,
                interval,
                timeout,
            } => {
                match http_get(host, &state.ip, *port, path, *timeout)
                    .await
                    .map(|(s, _)| s)
                {
                    Ok(status) if (200..300).contains(&status) => return Ok(()),
                    Ok(status) => last = format!("GET {path} answered {status}"),
                    Err(e) => last = format!("GET {path}: {}", e.cause),
                }
                *interval
            }
            HealthMode::Docker => match state.health.as_deref() {
                Some("healthy") => return Ok(()),
                Some("unhealthy") => {
                    return Err(Error::failed(&step, "Docker reports it unhealthy")
                        .on(host.name())
                        .hint("see its last log lines above"))
                }
                other => {
                    last = format!("Docker health is {}", other.unwrap_or("unknown"));
                    Duration::from_millis(500)
                }
            },
            HealthMode::Running(settle) => {
                if started.elapsed() >= *settle {
                    return Ok(());
                }
                last = "still settling".into();
                Duration::from_millis(250)
            }
        };
        if started.elapsed() >= deadline {
            return Err(Error::new(ErrorKind::Timeout, &step, format_args!("not healthy within {}: {last}", crate::error::humanize(deadline)))
                .on(host.name())
                .hint("see its last log lines above; raise deploy.health_timeout if the app needs longer to start"));
        }
        tokio::time::sleep(
            pause
                .min(deadline.saturating_sub(started.elapsed()))
                .max(Duration::from_millis(50)),
        )
        .await;
    }
}

struct State {
    running: bool,
    ip: String,
    health: Option<String>,
    summary: String,
    /// How long it has run, by this machine's clock against the engine's
    /// start time (`None` if unknown).
    up_for: Option<Duration>,
}

async fn container_state(host: &Host, container: &str) -> Result<State> {
    let engine = host.engine();
    let info = engine
        .call(
            "inspect the new container",
            engine.docker().inspect_container(container, None),
        )
        .await?;
    let state = info.state.unwrap_or_default();
    let ip = info
        .network_settings
        .and_then(|n| {
            n.networks.and_then(|nets| {
                nets.into_values()
                    .find_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
            })
        })
        .unwrap_or_default();
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let up_for = up_for(state.started_at.as_deref(), std::time::SystemTime::now());
    Ok(State {
        up_for,
        running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
        ip,
        health: state.health.and_then(|h| h.status).map(|s| s.to_string()),
        summary: format!("{status}, exit code {}", state.exit_code.unwrap_or(-1)),
    })
}

/// One `GET path` to `ip:port` as seen from the host (a container's address),
/// within `timeout`; returns the status code and the body.
pub async fn http_get(
    host: &Host,
    ip: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    if ip.is_empty() {
        return Err(
            Error::failed("health check", "the container has no IP address yet").on(host.name()),
        );
    }
    let step = format!("GET http://{ip}:{port}{path}");
    let work = async {
        let stream = host.tcp(ip, port, timeout).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::failed(&step, e))?;
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header("host", format!("{ip}:{port}"))
            .header("user-agent", "ballast-healthcheck")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Error::input(&step, e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::failed(&step, e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::failed(&step, e))?
            .to_bytes();
        Ok::<_, Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(Error::timeout(step, timeout).on(host.name())),
        Ok(r) => r.map_err(|e: Error| e.on(host.name())),
    }
}

/// The address of a container on its host's network.
pub async fn container_ip(host: &Host, container: &str) -> Result<String> {
    container_state(host, container).await.map(|s| s.ip)
}

/// One look at whether `container` is healthy by `mode` now, without
/// waiting: how a rerun tells a container it left proven from one it did
/// not. Any failure to look counts as not healthy.
pub async fn probe(host: &Host, container: &str, mode: &HealthMode) -> bool {
    let Ok(state) = container_state(host, container).await else {
        return false;
    };
    if !state.running {
        return false;
    }
    match mode {
        HealthMode::Http {
            port,
            path,
            timeout,
            ..
        } => {
            matches!(http_get(host, &state.ip, *port, path, *timeout).await, Ok((s, _)) if (200..300).contains(&s))
        }
        HealthMode::Docker => state.health.as_deref() == Some("healthy"),
        HealthMode::Running(settle) => state.up_for.is_some_and(|up| up >= *settle),
    }
}

/// How long a container started at `started_at` (Docker's RFC 3339 time,
/// with nanoseconds) has run at `now`.
fn up_for(started_at: Option<&str>, now: std::time::SystemTime) -> Option<Duration> {
    let started = humantime::parse_rfc3339_weak(started_at?).ok()?;
    now.duration_since(started).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_comes_from_dockers_start_time() {
        let now = humantime::parse_rfc3339("2026-12-01T17:00:10Z").unwrap();
        assert_eq!(
            up_for(Some("2026-12-01T17:00:04.123456789Z"), now),
            Some(Duration::from_millis(5_876) + Duration::from_nanos(543_211))
        );
        // Docker's zero time: never started.
        assert_eq!(up_for(Some("0001-01-01T00:00:00Z"), now), None);
        assert_eq!(up_for(Some("2026-12-01T17:00:11Z"), now), None);
        assert_eq!(up_for(None, now), None);
        assert_eq!(up_for(Some("garbage"), now), None);
    }
}
