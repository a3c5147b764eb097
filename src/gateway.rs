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

use std::collections::HashMap;

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
}

/// The Casbin request an HTTP request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub object: String,
    pub action: String,
    pub domain: String,
}

impl HttpMapping {
    /// Problems a config file's `[http]` section has, said once each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
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

    /// `header` reads the request's headers by (lowercase) name.
    pub fn map<'h>(
        &self,
        method: &str,
        host: &str,
        uri: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Mapped {
        let path = uri.split(['?', '#']).next().unwrap_or(uri);
        let domain = self
            .domain_header
            .as_deref()
            .and_then(|name| header(&name.to_ascii_lowercase()))
            .unwrap_or_default()
            .to_owned();
        let host = host.split(':').next().unwrap_or(host);
        for route in &self.routes {
            if route
                .host
                .as_deref()
                .is_some_and(|h| !h.eq_ignore_ascii_case(host))
            {
                continue;
            }
            if let Some(captures) = capture(&route.path, path) {
                return Mapped {
                    object: fill(&route.object, &captures),
                    action: route.action.clone().unwrap_or_else(|| self.action(method)),
                    domain,
                };
            }
        }
        Mapped {
            object: format!("unmapped:{path}"),
            action: self.action(method),
            domain,
        }
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
        let mapped = m.map(
            "GET",
            "h",
            "/v1/datasets/crm.customers/rows?limit=5",
            headers,
        );
        assert_eq!(mapped.object, "crm.customers");
        assert_eq!(mapped.action, "read");
        assert_eq!(
            m.map("POST", "h", "/v1/datasets/x/rows", headers).action,
            "export"
        );
        assert_eq!(
            m.map("DELETE", "h", "/v1/datasets/x/rows", headers).action,
            "delete"
        );
        let report = m.map("POST", "h", "/v1/reports/2026/q3", headers);
        assert_eq!(
            (report.object.as_str(), report.action.as_str()),
            ("reports.q3", "read")
        );
        assert_eq!(
            m.map("GET", "h", "/v1/datasets/x", headers).object,
            "unmapped:/v1/datasets/x"
        );
        assert!(m.problems().is_empty());
        let broken: HttpMapping =
            toml::from_str("[[routes]]\npath = \"/a/{b}\"\nobject = \"{c}\"\n").unwrap();
        assert_eq!(broken.problems().len(), 1, "{:?}", broken.problems());
    }
}
