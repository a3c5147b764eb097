//! A real nginx (Debian's package, started here on temporary ports and
//! directories) in front of vigil's `GET /v1/check` with `auth_request`,
//! configured as the README shows it (`gateway = "nginx"`, the identity from
//! nginx's own `auth_basic`): allowed paths reach the upstream with the
//! decision id, denied ones get 403, and the tricks a client can play with
//! the path and its own headers turn no denial into an allow. Every answer
//! is in vigil's verified audit log.

use std::{process::Command, time::Duration};

use vigil_e2e::{
    audit_records, eventually, free_port, http_get, repo_root, require_prepared, vigil_binary,
    Background,
};

/// A GET through nginx as `user` (HTTP basic credentials nginx checks
/// itself; `None`: anonymous), with extra raw header lines a client may
/// add: (status, body).
fn get_as(address: &str, path: &str, user: Option<&str>, extra: &str) -> (u16, String) {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let user = user
        .map(|u| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{u}-pw"));
            format!("Authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: app\r\n{user}{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

#[test]
fn nginx_auth_request_decides_through_vigil() {
    require_prepared();
    let root = repo_root();
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("vigil.toml");
    std::fs::write(
        &config,
        "[http]\ngateway = \"nginx\"\nsubject_header = \"x-user\"\n\
         [[http.routes]]\nhost = \"reports.example.com\"\npath = \"/v1/datasets/{dataset}/rows\"\nobject = \"reports.{dataset}\"\n\
         [[http.routes]]\npath = \"/v1/datasets/{dataset}/rows\"\nobject = \"{dataset}\"\n\
         [[http.routes]]\npath = \"/reports/{name}\"\nobject = \"reports.{name}\"\n",
    )
    .unwrap();
    // The shipped policies, with salaries kept from analysts by a deny
    // beside their `crm.*` allow: the shape a path trick would get around.
    let policies = scratch.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
        }
    }
    let mut rules = std::fs::read_to_string(policies.join("policy.csv")).unwrap();
    rules.push_str("\np, analyst, crm.salaries, *, deny\n");
    std::fs::write(policies.join("policy.csv"), rules).unwrap();
    let audit_dir = scratch.path().join("audit");
    let vigil = Background::start(
        &format!(
            "cd {scratch} && exec {binary} serve --policies {policies} --listen 127.0.0.1:0 \
             --http-listen 127.0.0.1:0 --config {config} --audit-dir {audit} --watch false",
            scratch = scratch.path().display(),
            binary = vigil_binary().display(),
            policies = policies.display(),
            config = config.display(),
            audit = audit_dir.display(),
        ),
        &[],
        "http listening on ",
        Duration::from_secs(60),
    );
    let check = vigil.printed("http listening on ").unwrap();

    let (port, upstream) = (free_port(), free_port());
    let prefix = scratch.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    // nginx's own authentication: the only source of X-User.
    std::fs::write(
        prefix.join("users"),
        "alice:{PLAIN}alice-pw\nerin:{PLAIN}erin-pw\nfrank:{PLAIN}frank-pw\n",
    )
    .unwrap();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_basic "data";
      auth_basic_user_file {prefix}/users;
      auth_request /_vigil;
      auth_request_set $vigil_decision $upstream_http_x_vigil_decision_id;
      proxy_set_header X-Vigil-Decision-Id $vigil_decision;
      proxy_pass http://127.0.0.1:{upstream};
    }}
    location = /_vigil {{
      internal;
      proxy_pass http://{check}/v1/check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-Host $host;
      proxy_set_header X-User $remote_user;
    }}
  }}
  server {{
    listen 127.0.0.1:{upstream};
    location / {{ return 200 "upstream saw decision $http_x_vigil_decision_id for $uri\n"; }}
  }}
}}
"#,
            prefix = prefix.display(),
        ),
    )
    .unwrap();
    let nginx = Background::start(
        &format!(
            "nginx -p {prefix} -c {conf} & echo started; wait",
            prefix = prefix.display(),
            conf = conf.display()
        ),
        &[],
        "started",
        Duration::from_secs(10),
    );
    let address = format!("127.0.0.1:{port}");
    eventually("nginx serving", Duration::from_secs(30), || {
        http_get(&address, "/").ok().map(|_| ())
    });

    let (status, body) = get_as(
        &address,
        "/v1/datasets/crm.customers/rows?limit=5",
        Some("alice"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("upstream saw decision ") && body.trim().len() > 22,
        "{body}"
    );
    let (status, body) = get_as(
        &address,
        "/v1/datasets/finance.payments/rows",
        Some("frank"),
        "",
    );
    assert_eq!(status, 403, "{body}");
    // nginx's own authentication answers the anonymous.
    let (status, body) = get_as(&address, "/v1/datasets/crm.customers/rows", None, "");
    assert_eq!(status, 401, "{body}");

    // A client naming another subject is not believed: nginx sets X-User
    // from whom it verified.
    let (status, body) = get_as(
        &address,
        "/v1/datasets/finance.payments/rows",
        Some("frank"),
        "X-User: dave\r\n",
    );
    assert_eq!(status, 403, "frank's own X-User: {body}");
    // Nor the host or path the client would like vigil to read.
    for extra in [
        "X-Forwarded-Host: reports.example.com\r\n",
        "X-Original-Host: reports.example.com\r\n",
        "X-Forwarded-Uri: /v1/datasets/crm.customers/rows\r\n",
        "X-Original-URI: /v1/datasets/crm.customers/rows\r\n",
    ] {
        let (status, body) = get_as(
            &address,
            "/v1/datasets/finance.payments/rows",
            Some("frank"),
            extra,
        );
        assert_eq!(status, 403, "{extra}: {body}");
    }
    // The path the upstream serves is the path decided: no spelling of
    // crm.salaries reaches it, and an ambiguous one is refused.
    let (status, body) = get_as(
        &address,
        "/v1/datasets/crm.salaries/rows",
        Some("alice"),
        "",
    );
    assert_eq!(status, 403, "{body}");
    for spelling in [
        "/v1/datasets/crm.salarie%73/rows",
        "/v1/datasets/crm%2esalaries/rows",
        "/v1//datasets/./crm.salaries/rows",
        "/reports/../v1/datasets/crm.salaries/rows",
        "/v1/datasets/crm.salaries;v=1/rows",
        "/v1/datasets/crm.salaries%00/rows",
        "/v1/datasets/crm.%EF%BD%93alaries/rows",
        "/reports/%2e%2e%2fv1%2fdatasets%2fcrm.salaries%2frows",
    ] {
        let (status, body) = get_as(&address, spelling, Some("alice"), "");
        assert_ne!(status, 200, "{spelling} reached the upstream: {body}");
    }
    let (status, body) = get_as(
        &address,
        "/reports/%2e%2e%2fv1%2fdatasets%2fcrm.salaries%2frows",
        Some("erin"),
        "",
    );
    assert_ne!(status, 200, "a reports viewer climbed out: {body}");

    nginx.stop();
    vigil.stop();
    // The chain verifies, and holds the three checks (the probe's `/` too).
    let output = Command::new(vigil_binary())
        .args(["audit", "verify", "--audit-dir"])
        .arg(&audit_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let decisions: Vec<(String, serde_json::Value)> = audit_records(&audit_dir)
        .into_iter()
        .filter(|record| record["kind"] == "decision")
        .map(|record| {
            (
                record["obj"].as_str().unwrap_or("").to_owned(),
                record["allowed"].clone(),
            )
        })
        .collect();
    assert!(
        decisions.contains(&("crm.customers".to_owned(), serde_json::json!(true))),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("finance.payments".to_owned(), serde_json::json!(false))),
        "{decisions:?}"
    );
    // Refused paths are audited too, as denied decisions of their caller.
    assert!(
        decisions.contains(&("unmappable".to_owned(), serde_json::json!(false))),
        "{decisions:?}"
    );
    assert!(
        !decisions.iter().any(
            |(object, allowed)| object.contains("salar") && allowed == &serde_json::json!(true)
        ),
        "{decisions:?}"
    );
}
