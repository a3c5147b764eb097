//! A real nginx (Debian's package, started here on temporary ports and
//! directories) in front of vigil's `GET /v1/check` with `auth_request`:
//! allowed paths reach the upstream with the decision id, denied ones get
//! 403, a missing identity 401, and every answer is in vigil's verified
//! audit log.

use std::{process::Command, time::Duration};

use vigil_e2e::{
    audit_records, eventually, free_port, http_get, repo_root, require_prepared, vigil_binary,
    Background,
};

/// A GET through nginx with an `X-User` header (the identity a gateway
/// would have established): (status, body).
fn get_as(address: &str, path: &str, user: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let user = user.map(|u| format!("X-User: {u}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: app\r\n{user}Connection: close\r\n\r\n"
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
        "[http]\nsubject_header = \"x-user\"\n\
         [[http.routes]]\npath = \"/v1/datasets/{dataset}/rows\"\nobject = \"{dataset}\"\n",
    )
    .unwrap();
    let audit_dir = scratch.path().join("audit");
    let vigil = Background::start(
        &format!(
            "cd {scratch} && exec {binary} serve --policies {policies} --listen 127.0.0.1:0 \
             --http-listen 127.0.0.1:0 --config {config} --audit-dir {audit} --watch false",
            scratch = scratch.path().display(),
            binary = vigil_binary().display(),
            policies = root.join("policies").display(),
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
      proxy_set_header X-User $http_x_user;
    }}
  }}
  server {{
    listen 127.0.0.1:{upstream};
    location / {{ return 200 "upstream saw decision $http_x_vigil_decision_id\n"; }}
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
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = get_as(&address, "/v1/datasets/crm.customers/rows", None);
    assert_eq!(status, 401, "{body}");

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
}
