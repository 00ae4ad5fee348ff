//! ballast-proxy-wire: the admin API of ballast-proxy, shared by the proxy
//! (which serves it) and ballast (which drives it), so that neither depends
//! on the other.
//!
//! The admin API is HTTP/1.1 + JSON over a unix socket, one route per
//! command ([`AdminRequest::route`]). Every answer is an [`AdminResponse`]:
//! `ok: true` with the command's result, or `ok: false` with an `error`
//! sentence that says what went wrong and what to do next.
//!
//! # Layout
//! - `request`: the commands ([`AdminRequest`] and one struct per command),
//!   their routes and JSON bodies.
//! - `response`: the answers ([`AdminResponse`] and what each command
//!   reports).
//! - `client`: [`admin_request`], sending one command to a socket within a
//!   deadline, and [`AdminError`], why it got no successful answer.

mod client;
mod request;
mod response;

pub use client::{admin_request, AdminError};
pub use request::{
    AdminRequest, CertificateRequest, ChallengeRequest, DeployRequest, HealthSpec,
    MaintenanceRequest, PauseRequest, RemoveCertificateRequest, RemoveRequest, ResumeRequest,
    COMMANDS,
};
pub use response::{
    AdminResponse, CertificateStatus, DeployReport, DrainReport, ServiceStatus, StatusReport,
    TargetStatus,
};
