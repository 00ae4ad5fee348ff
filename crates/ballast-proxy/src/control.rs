//! The control path: carries out admin commands by building a new table,
//! saving it, and swapping it in.
//!
//! A deploy is the handoff: validate → health-check the new targets until
//! healthy or the deploy deadline (nothing is switched on failure, the old
//! targets keep serving) → switch atomically (save, then swap) → retire the
//! old targets and wait until their in-flight requests finish or the drain
//! timeout is over (then their tunnels are cut) → report. Writes to the table
//! are serialised; one deploy per service runs at a time. A deploy also sets
//! the route's body size limits (absent: none), as it sets its hosts and
//! prefix, and keeps the service's request counters going. Two services may
//! not share a host name and path prefix.
//!
//! Certificates are checked (see `certs`), saved, then served for new
//! handshakes; ACME challenges are only held in memory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::certs::{self, Certificates, Challenges};
use crate::health;
use crate::proxy::UpstreamClient;
use crate::server::Phase;
use crate::state::StateStore;
use crate::table::{
    check_service_name, normalize_host, normalize_prefix, BodyLimits, PauseGate, Service, Table,
};
use crate::target::Target;
use crate::wire::{
    AdminRequest, AdminResponse, CertificateRequest, CertificateStatus, DeployReport,
    DeployRequest, DrainReport, MaintenanceRequest, PauseRequest, RemoveCertificateRequest,
    RemoveRequest, ResumeRequest, ServiceStatus, StatusReport, TargetStatus,
};

/// The longest a pause may hold requests.
const MAX_PAUSE: Duration = Duration::from_secs(600);

/// Carries out admin commands on the shared table.
#[derive(Debug)]
pub struct Control {
    /// The table the data path reads.
    table: Arc<ArcSwap<Table>>,
    /// Where every new table is saved before it is swapped in.
    store: StateStore,
    /// For health checks.
    client: UpstreamClient,
    /// Held while a new table is built, saved and swapped (never across
    /// an await), so no two writers lose each other's change.
    write: Mutex<()>,
    /// Services with a deploy or remove under way.
    busy: Mutex<HashSet<String>>,
    /// The certificates served by SNI.
    certificates: Arc<Certificates>,
    /// The ACME challenges plain HTTP answers.
    challenges: Arc<Challenges>,
    /// This process's id and listeners, for the status (set by `start`).
    process: (String, Vec<String>),
    /// Whether this process still owns the state: once a new process took
    /// over (see `takeover`), it reads the state directory, so nothing may
    /// be saved here any more.
    phase: Option<Arc<watch::Sender<Phase>>>,
}

/// Why [`Control::release_state`] did not let go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This process is no longer serving (stopping, or already taken over).
    NotServing,
    /// The new process could not be told; this one keeps serving.
    NotTold(String),
}

/// The answer to a change sent to a process that was taken over.
const TAKEN_OVER: &str = "this proxy process was taken over by a newer one and no longer \
     changes routes or certificates; nothing was changed: send the command again \
     (it reaches the new process)";

impl Control {
    /// Control over `table`, `certificates` and `challenges`, saving to
    /// `store`.
    pub fn new(
        table: Arc<ArcSwap<Table>>,
        store: StateStore,
        client: UpstreamClient,
        certificates: Arc<Certificates>,
        challenges: Arc<Challenges>,
    ) -> Control {
        Control {
            table,
            store,
            client,
            write: Mutex::new(()),
            busy: Mutex::new(HashSet::new()),
            certificates,
            challenges,
            process: (String::new(), Vec::new()),
            phase: None,
        }
    }

    /// Ties the state to this process's phase: changes are refused once a
    /// new process took over.
    pub fn owning_state_while(mut self, phase: Arc<watch::Sender<Phase>>) -> Control {
        self.phase = Some(phase);
        self
    }

    /// Lets a new process take over: under the write lock, `tell` tells it
    /// (`released`), and only once that went out does this process switch
    /// to [`Phase::Draining`]. Every change was thus either saved before
    /// (and the new process reads it) or is refused after; and if the new
    /// process cannot be told (it died, or gave up), this one keeps
    /// serving and owning the state instead of letting go with nobody
    /// taking over. Refused (without calling `tell`) when this process is
    /// no longer serving.
    pub fn release_state(
        &self,
        tell: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<(), Refusal> {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let Some(phase) = &self.phase else {
            return Err(Refusal::NotServing);
        };
        if *phase.borrow() != Phase::Serving {
            return Err(Refusal::NotServing);
        }
        tell().map_err(Refusal::NotTold)?;
        // Still under the write lock, and only this function switches from
        // Serving to Draining; a stop (Closing) may have come meanwhile, and
        // then stays: the new process accepts anyway.
        phase.send_if_modified(|now| {
            let serving = *now == Phase::Serving;
            if serving {
                *now = Phase::Draining;
            }
            serving
        });
        Ok(())
    }

    /// Refuses a change once a new process took over; call with the write
    /// lock held.
    fn still_owning_state(&self) -> Result<(), String> {
        match &self.phase {
            Some(phase) if *phase.borrow() != Phase::Serving => Err(TAKEN_OVER.into()),
            _ => Ok(()),
        }
    }

    /// Names this process (its random instance id) and its listeners
    /// (`http://0.0.0.0:80`) in the status.
    pub fn describe_process(mut self, instance: String, listeners: Vec<String>) -> Control {
        self.process = (instance, listeners);
        self
    }

    /// Carries out one command. Deploys and removes run on their own task,
    /// so they finish (switch and drain) even if the caller goes away.
    pub async fn execute(self: &Arc<Self>, request: AdminRequest) -> AdminResponse {
        let request_name = request.command();
        let result = match request {
            AdminRequest::Deploy(r) => {
                let control = Arc::clone(self);
                match tokio::spawn(async move { control.deploy(r).await }).await {
                    Ok(Ok(report)) => Ok(AdminResponse {
                        deploy: Some(report),
                        ..AdminResponse::ok()
                    }),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(format!("the deploy failed inside the proxy: {e}")),
                }
            }
            AdminRequest::Remove(r) => {
                let control = Arc::clone(self);
                match tokio::spawn(async move { control.remove(r).await }).await {
                    Ok(Ok(drain)) => Ok(AdminResponse {
                        drain: Some(drain),
                        ..AdminResponse::ok()
                    }),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(format!("the remove failed inside the proxy: {e}")),
                }
            }
            AdminRequest::Maintenance(r) => self.maintenance(r).map(|()| AdminResponse::ok()),
            AdminRequest::Pause(r) => self.pause(r).map(|()| AdminResponse::ok()),
            AdminRequest::Resume(r) => self.resume(r).map(|()| AdminResponse::ok()),
            AdminRequest::Status => Ok(AdminResponse {
                status: Some(self.status()),
                ..AdminResponse::ok()
            }),
            AdminRequest::Certificate(r) => self.certificate(r).map(|certificate| AdminResponse {
                certificate: Some(certificate),
                ..AdminResponse::ok()
            }),
            AdminRequest::RemoveCertificate(r) => {
                self.remove_certificate(r).map(|()| AdminResponse::ok())
            }
            AdminRequest::Challenge(r) => self
                .challenges
                .set(&r.token, r.key_authorization.as_deref())
                .map(|()| AdminResponse::ok()),
        };
        if let Err(e) = &result {
            tracing::info!(command = request_name, error = %e, "admin command refused");
        }
        result.unwrap_or_else(AdminResponse::error)
    }

    /// The handoff (see the module doc).
    async fn deploy(&self, r: DeployRequest) -> Result<DeployReport, String> {
        let plan = validate_deploy(&r)?;
        let _busy = self.claim(&r.service)?;
        if let Some(clash) = self
            .table
            .load()
            .conflict(&r.service, &plan.hosts, &plan.prefix)
        {
            return Err(format!("cannot deploy `{}`: {clash}", r.service));
        }
        let deadline = Instant::now() + Duration::from_millis(r.deploy_timeout_ms);
        let healthy_after =
            health::wait_all_healthy(&self.client, &plan.targets, &r.health, deadline)
                .await
                .map_err(|e| {
                    format!(
                        "{e}; nothing was switched: {}; hint: check the new container's logs \
                         and its health check path",
                        self.serving(&r.service)
                    )
                })?;
        let old = self.update(|table| {
            if let Some(clash) = table.conflict(&r.service, &plan.hosts, &plan.prefix) {
                return Err(format!("cannot deploy `{}`: {clash}", r.service));
            }
            let current = table.service(&r.service);
            let existing: Vec<Arc<Target>> = current.map(|s| s.targets.clone()).unwrap_or_default();
            let targets: Vec<Arc<Target>> = plan
                .targets
                .iter()
                .map(|addr| {
                    existing
                        .iter()
                        .find(|t| t.addr() == addr && !t.is_retired())
                        .cloned()
                        .unwrap_or_else(|| Target::new(addr.clone()))
                })
                .collect();
            let old: Vec<Arc<Target>> = existing
                .into_iter()
                .filter(|t| !targets.iter().any(|n| Arc::ptr_eq(n, t)))
                .collect();
            let mut service = Service::new(
                r.service.clone(),
                plan.hosts.clone(),
                plan.prefix.clone(),
                targets,
            );
            service.body_limits = plan.body_limits;
            if let Some(current) = current {
                service.maintenance = current.maintenance;
                service.pause = current.pause.clone();
                service.counters = Arc::clone(&current.counters);
            }
            Ok((table.with_service(service), old))
        })?;
        tracing::info!(service = %r.service, targets = ?plan.targets, "switched");
        let drain = drain(&old, Duration::from_millis(r.drain_timeout_ms)).await;
        Ok(DeployReport {
            service: r.service,
            targets: plan.targets,
            healthy_after_ms: healthy_after.as_millis() as u64,
            drain,
        })
    }

    /// Removes a service and drains its targets.
    async fn remove(&self, r: RemoveRequest) -> Result<DrainReport, String> {
        let _busy = self.claim(&r.service)?;
        let old = self.update(|table| {
            let service = self.known(table, &r.service)?;
            let old = service.targets.clone();
            if let Some(gate) = &service.pause {
                gate.release();
            }
            Ok((table.without_service(&r.service), old))
        })?;
        tracing::info!(service = %r.service, "removed");
        Ok(drain(&old, Duration::from_millis(r.drain_timeout_ms)).await)
    }

    fn maintenance(&self, r: MaintenanceRequest) -> Result<(), String> {
        self.update(|table| {
            let mut service = Service::clone(self.known(table, &r.service)?);
            service.maintenance = r.on;
            Ok((table.with_service(service), ()))
        })
    }

    fn pause(&self, r: PauseRequest) -> Result<(), String> {
        let max = Duration::from_millis(r.max_ms);
        if max.is_zero() || max > MAX_PAUSE {
            return Err(format!(
                "max_ms must be between 1 and {} (a pause holds requests briefly)",
                MAX_PAUSE.as_millis()
            ));
        }
        self.update(|table| {
            let mut service = Service::clone(self.known(table, &r.service)?);
            if let Some(earlier) = service.pause.replace(PauseGate::new(Instant::now() + max)) {
                earlier.release(); // its waiters move to the new gate
            }
            Ok((table.with_service(service), ()))
        })
    }

    fn resume(&self, r: ResumeRequest) -> Result<(), String> {
        self.update(|table| {
            let mut service = Service::clone(self.known(table, &r.service)?);
            if let Some(gate) = service.pause.take() {
                gate.release();
            }
            Ok((table.with_service(service), ()))
        })
    }

    /// Checks a certificate, saves it, then serves it for new handshakes.
    fn certificate(&self, r: CertificateRequest) -> Result<CertificateStatus, String> {
        let checked = certs::check(&r, SystemTime::now())?;
        let service = checked.service.clone();
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.still_owning_state()?;
        self.certificates.set(checked, |checked| {
            let saved = CertificateRequest {
                names: checked.names.clone(),
                ..r
            };
            self.store
                .save_certificate(&saved)
                .map_err(|e| certs::refusal(&saved.service, &format!("it cannot be saved: {e}")))
        })?;
        tracing::info!(%service, "certificate set");
        self.certificates
            .status()
            .into_iter()
            .find(|c| c.service == service)
            .ok_or_else(|| format!("the certificate of `{service}` was removed meanwhile"))
    }

    /// Stops serving a service's certificate and deletes its file.
    fn remove_certificate(&self, r: RemoveCertificateRequest) -> Result<(), String> {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.still_owning_state()?;
        self.certificates.remove(&r.service, || {
            self.store.remove_certificate(&r.service).map_err(|e| {
                format!(
                    "cannot remove the certificate of service `{}`: {e}; nothing was changed: \
                     the proxy still serves it",
                    r.service
                )
            })
        })?;
        tracing::info!(service = %r.service, "certificate removed");
        Ok(())
    }

    /// Every service as routed now.
    pub fn status(&self) -> StatusReport {
        let table = self.table.load();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            services: table
                .services()
                .iter()
                .map(|s| {
                    let counted = s.counters.read();
                    ServiceStatus {
                        name: s.name.clone(),
                        hosts: s.hosts.clone(),
                        path_prefix: s.path_prefix.clone(),
                        targets: s
                            .targets
                            .iter()
                            .map(|t| TargetStatus {
                                addr: t.addr().to_string(),
                                in_flight: t.in_flight(),
                            })
                            .collect(),
                        maintenance: s.maintenance,
                        paused: s.is_paused(),
                        requests: counted.requests,
                        responses_5xx: counted.responses_5xx,
                    }
                })
                .collect(),
            certificates: self.certificates.status(),
            instance: self.process.0.clone(),
            listeners: self.process.1.clone(),
        }
    }

    /// Builds, saves and swaps in a new table; `change` returns it with a
    /// value for the caller. Nothing is swapped when saving fails.
    fn update<T>(
        &self,
        change: impl FnOnce(&Table) -> Result<(Table, T), String>,
    ) -> Result<T, String> {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.still_owning_state()?;
        let current = self.table.load_full();
        let (next, value) = change(&current)?;
        self.store
            .save(&next)
            .map_err(|e| format!("{e}; nothing was changed: the proxy routes as before"))?;
        self.table.store(Arc::new(next));
        Ok(value)
    }

    /// The service named `name`, or an error listing the known ones.
    fn known<'t>(&self, table: &'t Table, name: &str) -> Result<&'t Arc<Service>, String> {
        table.service(name).ok_or_else(|| {
            let names: Vec<&str> = table.services().iter().map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                format!("no service named `{name}`: the proxy routes no service yet")
            } else {
                format!(
                    "no service named `{name}`; the proxy routes: {}",
                    names.join(", ")
                )
            }
        })
    }

    /// Says where a service's traffic goes now, for error messages.
    fn serving(&self, name: &str) -> String {
        match self.table.load().service(name) {
            Some(s) => {
                let addrs: Vec<&str> = s.targets.iter().map(|t| t.addr()).collect();
                format!("service `{name}` still routes to {}", addrs.join(", "))
            }
            None => format!("service `{name}` still has no route"),
        }
    }

    /// Marks a service busy until the guard drops.
    fn claim(&self, service: &str) -> Result<Busy<'_>, String> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(service.to_string()) {
            return Err(format!(
                "a deploy or remove of `{service}` is already under way; \
                 hint: wait for it to finish, then try again"
            ));
        }
        Ok(Busy {
            control: self,
            service: service.to_string(),
        })
    }
}

/// A service's deploy or remove slot, freed on drop.
struct Busy<'c> {
    control: &'c Control,
    service: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut busy = self.control.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&self.service);
    }
}

/// A deploy request checked and put in canonical form.
#[derive(Debug, PartialEq)]
struct DeployPlan {
    hosts: Vec<String>,
    prefix: String,
    targets: Vec<String>,
    body_limits: BodyLimits,
}

fn validate_deploy(r: &DeployRequest) -> Result<DeployPlan, String> {
    check_service_name(&r.service)?;
    let mut hosts = Vec::new();
    for host in &r.hosts {
        let normal = normalize_host(host);
        if normal.is_empty() || normal.contains(|c: char| c.is_whitespace() || "/@?#".contains(c)) {
            return Err(format!("host `{host}` is not a host name"));
        }
        if !hosts.contains(&normal) {
            hosts.push(normal);
        }
    }
    let prefix = normalize_prefix(r.path_prefix.as_deref())?;
    if r.targets.is_empty() {
        return Err("a deploy needs at least one target (`ip:port`)".into());
    }
    let mut targets = Vec::new();
    for target in &r.targets {
        check_target(target)?;
        if !targets.contains(target) {
            targets.push(target.clone());
        }
    }
    if !r.health.path.starts_with('/') {
        return Err(format!(
            "health check path `{}` must start with `/`",
            r.health.path
        ));
    }
    if r.health.interval_ms == 0 || r.health.timeout_ms == 0 || r.deploy_timeout_ms == 0 {
        return Err("health interval, health timeout and deploy timeout must be above 0 ms".into());
    }
    for (name, limit) in [
        ("max_request_body_bytes", r.max_request_body_bytes),
        ("max_response_body_bytes", r.max_response_body_bytes),
    ] {
        if limit == Some(0) {
            return Err(format!(
                "{name} must be above 0; hint: leave it out for no limit"
            ));
        }
    }
    Ok(DeployPlan {
        hosts,
        prefix,
        targets,
        body_limits: BodyLimits {
            request: r.max_request_body_bytes,
            response: r.max_response_body_bytes,
        },
    })
}

/// A target must be `host:port` (an IPv6 host in brackets).
fn check_target(target: &str) -> Result<(), String> {
    let bad = || format!("target `{target}` must be `ip:port`, e.g. `172.18.0.5:8080`");
    let uri: hyper::Uri = format!("http://{target}/").parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str() != target || authority.port_u16().is_none_or(|p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// Retires `targets` and waits up to `timeout` for their in-flight requests;
/// then cuts the tunnels still open.
async fn drain(targets: &[Arc<Target>], timeout: Duration) -> DrainReport {
    let start = Instant::now();
    for target in targets {
        target.retire();
    }
    let all = async {
        for target in targets {
            target.drained().await;
        }
    };
    let _ = tokio::time::timeout(timeout, all).await;
    let unfinished: u64 = targets.iter().map(|t| t.in_flight()).sum();
    if unfinished > 0 {
        for target in targets {
            target.cut();
        }
    }
    DrainReport {
        drained: targets.iter().map(|t| t.addr().to_string()).collect(),
        unfinished,
        elapsed_ms: start.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests;
