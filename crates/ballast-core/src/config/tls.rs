//! Semantic checks of a role's `proxy.tls`: exactly one of its two forms
//! (files or ACME), host names for the certificate to cover, and an ACME
//! account that a CA can accept.

use super::node::shorten;
use super::schema::{Config, ProxyTls};
use super::validate::Checker;

impl Checker<'_> {
    pub(super) fn tls(&mut self, config: &Config) {
        for (role, r) in &config.roles {
            let Some(proxy) = &r.proxy else { continue };
            let Some(tls) = &proxy.tls else { continue };
            self.tls_form(role, tls);
            if proxy.hosts.is_empty() {
                self.key_error(
                    &["roles", role, "proxy", "tls"],
                    format!("roles.{role}.proxy.tls: a certificate needs the host names it serves, and `proxy.hosts` is empty"),
                )
                .set_hint("list the names clients use in `proxy.hosts`, e.g. `hosts: [shop.example.com]`");
            }
        }
    }

    fn tls_form(&mut self, role: &str, tls: &ProxyTls) {
        let at = ["roles", role, "proxy", "tls"];
        match (&tls.cert, &tls.key, &tls.acme) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                self.key_error(
                    &["roles", role, "proxy", "tls", "acme"],
                    format!("roles.{role}.proxy.tls: `acme` and `cert`/`key` are two ways to get a certificate; give one"),
                )
                .set_hint("keep `cert` and `key` to serve your own files, or `acme` to have a CA issue and renew it");
            }
            (None, None, None) => {
                self.key_error(
                    &at,
                    format!("roles.{role}.proxy.tls: no certificate: give `cert` and `key`, or `acme`"),
                )
                .set_hint("e.g. `tls: { cert: certs/shop.pem, key: certs/shop.key }` or `tls: { acme: { email: ops@example.com, directory: https://acme-v02.api.letsencrypt.org/directory } }`");
            }
            (Some(_), None, None) | (None, Some(_), None) => {
                let (given, missing) = if tls.cert.is_some() {
                    ("cert", "key")
                } else {
                    ("key", "cert")
                };
                self.key_error(
                    &["roles", role, "proxy", "tls", given],
                    format!("roles.{role}.proxy.tls: `{given}` without `{missing}`"),
                )
                .set_hint("give both the certificate chain (`cert`) and its private key (`key`), as PEM files relative to the config file");
            }
            (None, None, Some(acme)) => {
                if !acme.directory.starts_with("https://") && !acme.directory.starts_with("http://")
                {
                    self.error(
                        &["roles", role, "proxy", "tls", "acme", "directory"],
                        format!(
                            "roles.{role}.proxy.tls.acme.directory: `{}` is not a URL",
                            shorten(&acme.directory)
                        ),
                    )
                    .set_hint("write the CA's directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`");
                }
                let email = acme.email.trim();
                let ok = email
                    .split_once('@')
                    .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
                if !ok || email.contains(char::is_whitespace) {
                    self.error(
                        &["roles", role, "proxy", "tls", "acme", "email"],
                        format!(
                            "roles.{role}.proxy.tls.acme.email: `{}` is not an email address",
                            shorten(&acme.email)
                        ),
                    )
                    .set_hint("the CA registers the account under it and writes there before a certificate expires");
                }
            }
            (Some(_), Some(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml};
    use super::super::TlsSource;

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    port: 8080\n    proxy:\n      hosts: [shop.test]\n";

    #[test]
    fn files_or_acme_load_as_their_form() {
        let yaml = format!("{HEAD}      tls: {{ cert: c.pem, key: k.pem }}\n");
        let loaded = parse_yaml(&yaml).unwrap();
        let tls = loaded.config.roles["web"]
            .proxy
            .as_ref()
            .unwrap()
            .tls
            .as_ref()
            .unwrap();
        assert!(matches!(tls.source(), Some(TlsSource::Files { .. })));
        assert_eq!(tls.https_port, 443);
        let yaml = format!("{HEAD}      tls: {{ acme: {{ email: ops@example.com, directory: \"https://ca.test/dir\" }} }}\n");
        let loaded = parse_yaml(&yaml).unwrap();
        let tls = loaded.config.roles["web"]
            .proxy
            .as_ref()
            .unwrap()
            .tls
            .as_ref()
            .unwrap();
        let Some(TlsSource::Acme(acme)) = tls.source() else {
            panic!("not acme")
        };
        assert_eq!(
            acme.renew_before,
            std::time::Duration::from_secs(30 * 86400)
        );
    }

    #[test]
    fn exactly_one_form_is_given() {
        let yaml = format!("{HEAD}      tls: {{ cert: c.pem, key: k.pem, acme: {{ email: ops@example.com, directory: \"https://ca.test/dir\" }} }}\n");
        assert_error(
            &yaml,
            9,
            39,
            "`acme` and `cert`/`key`",
            "to have a CA issue",
        );
        let yaml = format!("{HEAD}      tls: {{ https_port: 8443 }}\n");
        assert_error(&yaml, 9, 7, "no certificate", "tls: { acme:");
        let yaml = format!("{HEAD}      tls: {{ cert: c.pem }}\n");
        assert_error(&yaml, 9, 14, "`cert` without `key`", "private key");
    }

    #[test]
    fn a_certificate_needs_host_names() {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n    port: 8080\n    proxy:\n      tls: { acme: { email: ops@example.com, directory: \"https://ca.test/dir\" } }\n";
        assert_error(yaml, 8, 7, "`proxy.hosts` is empty", "proxy.hosts");
    }

    #[test]
    fn acme_needs_a_url_and_an_address() {
        let yaml = format!(
            "{HEAD}      tls: {{ acme: {{ email: ops@example.com, directory: ca.test }} }}\n"
        );
        assert_error(&yaml, 9, 57, "is not a URL", "directory URL");
        let yaml = format!(
            "{HEAD}      tls: {{ acme: {{ email: ops, directory: \"https://ca.test/dir\" }} }}\n"
        );
        assert_error(&yaml, 9, 29, "not an email address", "account");
    }
}
