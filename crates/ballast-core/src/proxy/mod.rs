//! ballast-proxy on the hosts: one proxy per host serves every service
//! there. `docs/proxy.md` tells operators the same story.
//!
//! # Design
//! - **Host networking, takeover instead of restart.** The proxy container
//!   runs in the host's network namespace, listening directly on the HTTP
//!   and HTTPS ports. A new proxy process receives the old one's listening
//!   sockets over a unix socket in the shared state directory (as nginx's
//!   binary upgrade and Envoy's hot restart do); the old one stops
//!   accepting, drains in-flight requests and WebSockets, and exits. No
//!   connection is refused at any moment. Docker's published ports would
//!   force stop-then-start instead: the port belongs to the old container
//!   until it is gone. See [`lifecycle`].
//! - **Identity is the version and build.** The image is
//!   `ballast-proxy:<version>-<build>`, labelled with both (the build is a
//!   hash of the static binary). A proxy is
//!   compared with what a deploy wants by its settings ([`Listen`]: ports,
//!   trusted proxies, drain time; never certificates, which travel through
//!   the admin API) and its build. A deploy reconfigures a proxy whose
//!   settings differ (by takeover, keeping its image, one host at a time)
//!   and leaves one of another build running, saying `ballast proxy
//!   upgrade` is due: a deploy never replaces proxies in bulk, and two
//!   operators with different builds never flip each other's proxies.
//! - **Routing by container identity.** The proxy routes to a container's
//!   address on its service's own network (see [`network`]).
//!
//! # Layout
//! - [`image`]: the image, built offline from a static ballast binary, and
//!   its identity ([`Build`]).
//! - [`listen`]: the settings the proxy process runs with, merged across
//!   services.
//! - [`lifecycle`]: the container: observing it, starting it, replacing it
//!   by takeover.
//! - [`container`]: the Docker calls on the proxy's containers (create,
//!   inspect, start, stop, rename, restart policy, remove) `lifecycle` makes.
//! - [`network`]: the `ballast` and per-service networks, the routed address.
//! - [`admin`]: the admin socket: requests, which process answers, routes.

pub mod admin;
mod container;
pub mod image;
pub mod lifecycle;
pub mod listen;
pub mod network;

pub use admin::{admin, route_name, routes, status, switch, Route};
pub use image::{static_binary, Build};
pub use lifecycle::{ensure, observe, restart, running_image, Image, ProxyFound, Replaced};
pub use listen::Listen;
pub use network::{remove_service_network, routable_address, service_network, NETWORK};

pub const CONTAINER: &str = "ballast-proxy";
/// Routes, the admin socket and the takeover socket live here on each
/// host, outside the container, shared by the old and the new process.
pub const STATE_DIR: &str = "/var/lib/ballast/proxy";
pub const ADMIN_SOCKET: &str = "/var/lib/ballast/proxy/admin.sock";
/// Marks what ballast made for the proxy (its containers, its networks).
const LABEL: &str = "io.ballast.proxy";
