//! How a gateway's HTTP request becomes a Casbin request, for `GET
//! /v1/check` (nginx, Traefik) and Envoy's ext_authz `Check` alike: the
//! `[http]` section of vigil's config file.
//!
//! ```toml
//! [http]
//! subject_header = "x-user"            # trusted mode: who is asking
//! domain_header = "x-tenant"           # optional
//! [http.methods]                       # method → action (defaults below)
//! GET = "read"
//! [[http.routes]]                      # first match wins
//! path = "/v1/datasets/{dataset}/rows" # `{name}` captures one segment
//! object = "{dataset}"                 # may use the captures
//! host = "api.example.com"             # optional
//! ```
//!
//! A request no route matches is decided on the object `unmapped:PATH`
//! (so it is audited like every check, and denied unless a rule grants
//! it, e.g. `*`).
//!
//! Routes match the path the upstream will serve ([`path::normalize`]),
//! never the client's spelling of it, and objects are case-sensitive as
//! Casbin is (a route's `case_insensitive = true` is for upstreams that are
//! not). `gateway` names which headers the gateway itself sets
//! ([`GatewayKind`]): only those are read, since a gateway passes its
//! clients' own headers along.

pub mod path;

use std::collections::HashMap;

pub use path::PathError;

/// The gateway in front of `/v1/check`, and so which headers describe the
/// original request. A gateway forwards its client's headers too: only the
/// ones it sets itself can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI`
    /// (`$request_uri`) and `X-Original-Host` (`$host`), each set with
    /// `proxy_set_header` in the subrequest's location.
    Nginx,
    /// Traefik `forwardAuth`: `X-Forwarded-Method`, `-Uri` and `-Host`,
    /// which Traefik sets itself.
    Traefik,
    /// Envoy asks over ext_authz (gRPC) with the request's own fields, not
    /// through `/v1/check`.
    Envoy,
}

impl GatewayKind {
    /// (method, uri, host) header names.
    fn headers(self) -> Option<[&'static str; 3]> {
        match self {
            GatewayKind::Nginx => Some(["x-original-method", "x-original-uri", "x-original-host"]),
            GatewayKind::Traefik => {
                Some(["x-forwarded-method", "x-forwarded-uri", "x-forwarded-host"])
            }
            GatewayKind::Envoy => None,
        }
    }
}

/// The original request a gateway's subrequest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Described<'h> {
    pub method: &'h str,
    pub uri: &'h str,
    /// Empty when the gateway names no host (then no host-scoped route
    /// matches).
    pub host: &'h str,
}

/// Why a gateway request cannot be mapped: refused (400) and audited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("{0}")]
    Sources(String),
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMapping {
    /// Trusted mode: the header naming the subject (set by the gateway
    /// after its own authentication). In jwt mode the token decides.
    #[serde(default, alias = "subject-header")]
    pub subject_header: Option<String>,
    #[serde(default, alias = "domain-header")]
    pub domain_header: Option<String>,
    #[serde(default)]
    pub methods: HashMap<String, String>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Which gateway asks `/v1/check`, and so which headers it sets. Unset,
    /// both nginx's and Traefik's are read, two that disagree are refused,
    /// and no host is read (host-scoped routes need it set).
    #[serde(default)]
    pub gateway: Option<GatewayKind>,
    /// Browser origins (`https://console.example.com`) whose pages may
    /// call the HTTP API; none by default (no CORS, a foreign `Origin` is
    /// refused).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Host names the HTTP API answers to besides IP addresses and
    /// `localhost` (a Kubernetes service name, say): a page whose DNS name
    /// was rebound to vigil's address sends its own, and is refused.
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub path: String,
    pub object: String,
    #[serde(default)]
    pub host: Option<String>,
    /// Overrides the method's action for this route.
    #[serde(default)]
    pub action: Option<String>,
    /// The upstream serves `/Crm.Salaries` as `/crm.salaries`: the path is
    /// matched and captured in lower case.
    #[serde(default, alias = "case-insensitive")]
    pub case_insensitive: bool,
}

/// The Casbin request an HTTP request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub object: String,
    pub action: String,
    pub domain: String,
}

impl HttpMapping {
    /// Whether the HTTP API answers a request with this `Host` header: an
    /// IP address, `localhost`, or a name `hosts` lists (a port ignored).
    pub fn serves_host(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // `[::1]:8080`
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }),
        };
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Problems a config file's `[http]` section has, said once each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            if route.host.is_some() && self.gateway.is_none() {
                problems.push(format!(
                    "[[http.routes]] #{}: a host-scoped route needs [http] gateway = \"nginx\", \
                     \"traefik\" or \"envoy\", so vigil reads the host from a header that gateway \
                     sets, never one its clients send",
                    index + 1
                ));
            }
            if !route.path.starts_with('/') {
                problems.push(format!(
                    "[[http.routes]] #{}: path `{}` must start with `/`",
                    index + 1,
                    route.path
                ));
            }
            let captures: Vec<&str> = segments(&route.path)
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let mut rest = route.object.as_str();
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}') else {
                    break;
                };
                let name = &rest[open + 1..open + close];
                if !captures.contains(&name) {
                    problems.push(format!(
                        "[[http.routes]] #{}: object `{}` uses `{{{name}}}`, which path `{}` does not capture",
                        index + 1,
                        route.object,
                        route.path
                    ));
                }
                rest = &rest[open + close + 1..];
            }
        }
        problems
    }

    fn action(&self, method: &str) -> String {
        if let Some((_, action)) = self
            .methods
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))
        {
            return action.clone();
        }
        const DEFAULTS: [(&str, &str); 7] = [
            ("GET", "read"),
            ("HEAD", "read"),
            ("OPTIONS", "read"),
            ("POST", "write"),
            ("PUT", "write"),
            ("PATCH", "write"),
            ("DELETE", "delete"),
        ];
        match DEFAULTS
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))
        {
            Some((_, action)) => (*action).to_owned(),
            None => method.to_ascii_lowercase(),
        }
    }

    /// The original request a `/v1/check` subrequest describes, read only
    /// from the headers the configured gateway sets (`header` reads the
    /// subrequest's headers by lowercase name).
    pub fn described<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<Described<'h>, MappingError> {
        let missing = || {
            MappingError::Sources(match self.gateway {
                Some(GatewayKind::Nginx) => {
                    "a check needs the original request: X-Original-Method \
                     and X-Original-URI (nginx auth_request, set with proxy_set_header)"
                        .to_owned()
                }
                Some(GatewayKind::Traefik) => "a check needs the original request: \
                     X-Forwarded-Method and X-Forwarded-Uri (Traefik forwardAuth sets them)"
                    .to_owned(),
                _ => "a check needs the original request: X-Original-Method and X-Original-URI \
                     (nginx auth_request), or X-Forwarded-Method and X-Forwarded-Uri (Traefik)"
                    .to_owned(),
            })
        };
        match self.gateway {
            Some(GatewayKind::Envoy) => Err(MappingError::Sources(
                "[http] gateway = \"envoy\": Envoy asks over ext_authz on the gRPC listener, \
                 not /v1/check"
                    .to_owned(),
            )),
            Some(kind) => {
                let [method, uri, host] = kind.headers().expect("nginx and traefik name headers");
                Ok(Described {
                    method: header(method).ok_or_else(missing)?,
                    uri: header(uri).ok_or_else(missing)?,
                    host: header(host).unwrap_or_default(),
                })
            }
            None => {
                // Either family, never both saying different things: a
                // gateway sets one, a client may add the other.
                let one = |nginx: &str, traefik: &str| match (header(nginx), header(traefik)) {
                    (Some(a), Some(b)) if a != b => Err(MappingError::Sources(format!(
                        "the check names the original request twice, differently ({nginx} and \
                         {traefik}); set [http] gateway so vigil reads only the gateway's own"
                    ))),
                    (a, b) => Ok(a.or(b)),
                };
                Ok(Described {
                    method: one("x-original-method", "x-forwarded-method")?.ok_or_else(missing)?,
                    uri: one("x-original-uri", "x-forwarded-uri")?.ok_or_else(missing)?,
                    host: "",
                })
            }
        }
    }

    /// The Casbin request of `method` on `host` and `uri` (the path as the
    /// client sent it), matched on the path the upstream will serve.
    /// `header` reads the request's headers by (lowercase) name.
    pub fn map<'h>(
        &self,
        method: &str,
        host: &str,
        uri: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<Mapped, MappingError> {
        let path = path::normalize(uri)?;
        let domain = self
            .domain_header
            .as_deref()
            .and_then(|name| header(&name.to_ascii_lowercase()))
            .unwrap_or_default()
            .to_owned();
        let host = host.split(':').next().unwrap_or(host);
        let mut lowered = None;
        for route in &self.routes {
            if route
                .host
                .as_deref()
                .is_some_and(|h| !h.eq_ignore_ascii_case(host))
            {
                continue;
            }
            let (template, path): (std::borrow::Cow<'_, str>, &str) = if route.case_insensitive {
                let lowered = lowered.get_or_insert_with(|| path.to_lowercase());
                (route.path.to_lowercase().into(), lowered.as_str())
            } else {
                (route.path.as_str().into(), path.as_str())
            };
            if let Some(captures) = capture(&template, path) {
                return Ok(Mapped {
                    object: fill(&route.object, &captures),
                    action: route.action.clone().unwrap_or_else(|| self.action(method)),
                    domain,
                });
            }
        }
        Ok(Mapped {
            object: format!("unmapped:{path}"),
            action: self.action(method),
            domain,
        })
    }
}

/// `template` with each `{name}` replaced by its capture, in one pass (a
/// captured value is never read as a template itself).
fn fill(template: &str, captures: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        match captures.iter().find(|(captured, _)| *captured == name) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The template's `{name}` captures if `path` matches it segment by segment.
fn capture<'a>(template: &'a str, path: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
    let mut wanted = segments(template);
    let mut given = segments(path);
    let mut captures = Vec::new();
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(captures),
            (Some(w), Some(g)) => match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                Some(name) => captures.push((name, g)),
                None if w == g => {}
                None => return None,
            },
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> HttpMapping {
        toml::from_str(
            r#"
            subject_header = "x-user"
            [methods]
            POST = "export"
            [[routes]]
            path = "/v1/datasets/{dataset}/rows"
            object = "{dataset}"
            [[routes]]
            path = "/v1/reports/{year}/{name}"
            object = "reports.{name}"
            action = "read"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn routes_map_paths_to_objects_first_match_wins() {
        let headers = |_: &str| -> Option<&str> { None };
        let m = mapping();
        let map = |method: &str, path: &str| m.map(method, "h", path, headers).unwrap();
        let mapped = map("GET", "/v1/datasets/crm.customers/rows?limit=5");
        assert_eq!(mapped.object, "crm.customers");
        assert_eq!(mapped.action, "read");
        assert_eq!(map("POST", "/v1/datasets/x/rows").action, "export");
        assert_eq!(map("DELETE", "/v1/datasets/x/rows").action, "delete");
        let report = map("POST", "/v1/reports/2026/q3");
        assert_eq!(
            (report.object.as_str(), report.action.as_str()),
            ("reports.q3", "read")
        );
        assert_eq!(
            map("GET", "/v1/datasets/x").object,
            "unmapped:/v1/datasets/x"
        );
        assert!(m.problems().is_empty());
        let broken: HttpMapping =
            toml::from_str("[[routes]]\npath = \"/a/{b}\"\nobject = \"{c}\"\n").unwrap();
        assert_eq!(broken.problems().len(), 1, "{:?}", broken.problems());
    }

    #[test]
    fn routes_see_the_path_the_upstream_serves() {
        let headers = |_: &str| -> Option<&str> { None };
        let m = mapping();
        for spelling in [
            "/v1/datasets/crm.salarie%73/rows",
            "/v1//datasets/./crm.salaries/rows",
            "/reports/../v1/datasets/crm.salaries/rows",
        ] {
            let mapped = m.map("GET", "h", spelling, headers).unwrap();
            assert_eq!(mapped.object, "crm.salaries", "{spelling}");
        }
        for refused in [
            "/reports/%2e%2e%2fv1%2fdatasets%2fcrm.salaries%2frows",
            "/v1/datasets/crm.salaries;v=1/rows",
            "/v1/datasets/crm.salaries%00/rows",
        ] {
            assert!(m.map("GET", "h", refused, headers).is_err(), "{refused}");
        }
        // Case-sensitive as Casbin is, unless the route says otherwise.
        assert_eq!(
            m.map("GET", "h", "/v1/datasets/crm.SALARIES/rows", headers)
                .unwrap()
                .object,
            "crm.SALARIES"
        );
        let folded: HttpMapping = toml::from_str(
            "[[routes]]\npath = \"/v1/Datasets/{d}/rows\"\nobject = \"{d}\"\ncase_insensitive = true\n",
        )
        .unwrap();
        assert_eq!(
            folded
                .map("GET", "h", "/V1/datasets/CRM.Salaries/ROWS", headers)
                .unwrap()
                .object,
            "crm.salaries"
        );
    }

    #[test]
    fn only_the_gateways_own_headers_describe_the_request() {
        let sent = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        let with = |gateway: &str| -> HttpMapping {
            toml::from_str(&format!("gateway = \"{gateway}\"\n")).unwrap()
        };
        // nginx: a client's X-Forwarded-* is not read.
        let described = with("nginx")
            .described(sent(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/a"),
                ("x-original-host", "api.example.com"),
                ("x-forwarded-uri", "/b"),
                ("x-forwarded-host", "reports.example.com"),
            ]))
            .unwrap();
        assert_eq!((described.uri, described.host), ("/a", "api.example.com"));
        // Traefik: a client's X-Original-URI is not read.
        let described = with("traefik")
            .described(sent(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/b"),
                ("x-original-uri", "/a"),
            ]))
            .unwrap();
        assert_eq!((described.uri, described.host), ("/b", ""));
        // Unset: two sources that disagree are refused; no host is read.
        let unset = HttpMapping::default();
        assert!(unset
            .described(sent(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/a"),
                ("x-forwarded-uri", "/b"),
            ]))
            .is_err());
        let described = unset
            .described(sent(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/b"),
                ("x-forwarded-host", "reports.example.com"),
            ]))
            .unwrap();
        assert_eq!((described.uri, described.host), ("/b", ""));
        assert!(with("envoy").described(sent(&[])).is_err());
        // A host-scoped route needs the gateway named.
        let scoped: HttpMapping =
            toml::from_str("[[routes]]\npath = \"/a\"\nobject = \"a\"\nhost = \"h\"\n").unwrap();
        assert_eq!(scoped.problems().len(), 1, "{:?}", scoped.problems());
    }
}
