//! Configuration as an operator writes it: flags, file, and the problems
//! reported together.

use super::*;
use crate::{audit::SyncMode, authn::AuthMode};

fn serve_args() -> ServeArgs {
    ServeArgs::default()
}

#[test]
fn defaults_are_local_and_trusted() {
    let config = Config::from_args(serve_args()).unwrap();
    assert_eq!(
        config.listeners,
        vec![ListenAddr::parse(DEFAULT_LISTEN).unwrap()]
    );
    assert!(matches!(
        config.auth,
        AuthSettings::Trusted {
            forced_remote: false
        }
    ));
    assert_eq!(config.audit.sync, SyncMode::Batch);
}

#[test]
fn trusted_on_a_remote_listener_needs_force() {
    let mut args = serve_args();
    args.listen = vec!["0.0.0.0:5000".into(), "unix:/tmp/x.sock".into()];
    let err = Config::from_args(args).unwrap_err();
    assert!(err.to_string().contains("0.0.0.0:5000"), "{err}");

    let mut args = serve_args();
    args.http_listen = Some("0.0.0.0:8080".into());
    let err = Config::from_args(args).unwrap_err();
    assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");

    let mut args = serve_args();
    args.listen = vec!["0.0.0.0:5000".into()];
    args.force_trusted_remote = true;
    let config = Config::from_args(args).unwrap();
    assert!(matches!(
        config.auth,
        AuthSettings::Trusted {
            forced_remote: true
        }
    ));
}

#[test]
fn jwt_in_clear_off_host_needs_tls_or_force() {
    let remote_jwt = || {
        let mut args = serve_args();
        args.listen = vec!["0.0.0.0:5000".into()];
        args.auth = Some(AuthMode::Jwt);
        args
    };
    let err = Config::from_args(remote_jwt()).unwrap_err();
    assert!(
        err.to_string().contains("--tls-cert") && err.to_string().contains("0.0.0.0:5000"),
        "{err}"
    );
    let mut forced = remote_jwt();
    forced.force_plaintext_jwt = true;
    assert!(Config::from_args(forced).is_ok());
    let mut tls = remote_jwt();
    tls.tls_cert = Some("server.crt".into());
    tls.tls_key = Some("server.key".into());
    assert!(Config::from_args(tls).unwrap().tls.is_some());
    // Loopback stays allowed in clear.
    let mut local = serve_args();
    local.auth = Some(AuthMode::Jwt);
    assert!(Config::from_args(local).is_ok());
}

#[test]
fn mtls_needs_a_client_ca_and_lets_trusted_mode_off_host() {
    let mut args = serve_args();
    args.auth = Some(AuthMode::Mtls);
    args.tls_cert = Some("server.crt".into());
    args.tls_key = Some("server.key".into());
    let err = Config::from_args(args).unwrap_err();
    assert!(err.to_string().contains("--tls-client-ca"), "{err}");

    let mut args = serve_args();
    args.tls_key = Some("server.key".into());
    let err = Config::from_args(args).unwrap_err();
    assert!(err.to_string().contains("--tls-cert is missing"), "{err}");

    // Trusted mode on an mTLS listener: only certificate holders call.
    let mut args = serve_args();
    args.listen = vec!["0.0.0.0:5000".into()];
    args.tls_cert = Some("server.crt".into());
    args.tls_key = Some("server.key".into());
    args.tls_client_ca = Some("ca.crt".into());
    let config = Config::from_args(args).unwrap();
    assert!(matches!(
        config.auth,
        AuthSettings::Trusted {
            forced_remote: false
        }
    ));
}

#[test]
fn shipping_names_its_chain_and_never_echoes_the_connection_string() {
    let mut args = serve_args();
    args.ship_to = Some("postgres://vigil:s3cret@db.internal:5432/witness".into());
    let config = Config::from_args(args).unwrap();
    let ship = config.ship.unwrap();
    assert!(ship.chain.ends_with("vigil-data/audit"), "{}", ship.chain);
    assert!(!format!("{ship:?}").contains("s3cret"));

    let mut args = serve_args();
    args.ship_to = Some("mysql://root:s3cret@db".into());
    let err = Config::from_args(args).unwrap_err().to_string();
    assert!(
        err.contains("--ship-to") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let mut args = serve_args();
    args.listen = vec!["not an address".into()];
    args.auth = Some(AuthMode::Jwt);
    args.jwt_leeway = Some("soon".into());
    args.max_batch_items = Some(0);
    let err = Config::from_args(args).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn jwt_with_a_key_needs_an_audience_unless_waived() {
    let mut args = serve_args();
    args.auth = Some(AuthMode::Jwt);
    args.jwt_secret_file = Some("secret".into());
    let err = Config::from_args(args).unwrap_err();
    assert!(err.to_string().contains("--jwt-audience"), "{err}");

    let mut args = serve_args();
    args.auth = Some(AuthMode::Jwt);
    args.jwt_secret_file = Some("secret".into());
    args.jwt_any_audience = true;
    args.jwt_any_issuer = true;
    assert!(Config::from_args(args).is_ok());

    // The development secret signs only vigil's own tokens.
    let mut args = serve_args();
    args.auth = Some(AuthMode::Jwt);
    assert!(Config::from_args(args).is_ok());
}

#[test]
fn jwt_with_a_key_needs_an_issuer_unless_waived() {
    let mut args = serve_args();
    args.auth = Some(AuthMode::Jwt);
    args.jwt_secret_file = Some("secret".into());
    args.jwt_audience = Some("vigil".into());
    let err = Config::from_args(args).unwrap_err();
    assert!(err.to_string().contains("--jwt-issuer"), "{err}");

    let mut args = serve_args();
    args.auth = Some(AuthMode::Jwt);
    args.jwt_secret_file = Some("secret".into());
    args.jwt_audience = Some("vigil".into());
    args.jwt_issuer = Some("https://idp.example.com/tenant-a".into());
    assert!(Config::from_args(args).is_ok());

    let mut args = serve_args();
    args.auth = Some(AuthMode::Jwt);
    args.jwt_secret_file = Some("secret".into());
    args.jwt_audience = Some("vigil".into());
    args.jwt_any_issuer = true;
    assert!(Config::from_args(args).is_ok());
}

#[test]
fn the_log_format_comes_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vigil.toml");
    std::fs::write(&file, "log_format = \"json\"\n").unwrap();
    let mut args = serve_args();
    args.config = Some(file);
    let config = Config::from_args(args).unwrap();
    assert_eq!(config.log_format, Some(LogFormat::Json));
}

#[test]
fn flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vigil.toml");
    std::fs::write(
        &file,
        "policies = \"from-file\"\nlisten = [\"127.0.0.1:7000\"]\n[audit]\nsync = \"always\"\n",
    )
    .unwrap();
    let mut args = serve_args();
    args.config = Some(file);
    args.policies = Some("from-flag".into());
    let config = Config::from_args(args).unwrap();
    assert_eq!(config.policies, PathBuf::from("from-flag"));
    assert_eq!(config.listeners[0].to_string(), "127.0.0.1:7000");
    assert_eq!(config.audit.sync, SyncMode::Always);
}

/// The off-host trust rules, each case through the one function that
/// holds them: (mode, reached from other hosts, TCP admin listeners,
/// transport) → the problems' first words.
#[test]
fn off_host_trust_rules() {
    use super::sections::{off_host_trust, Transport};
    use crate::authn::AuthMode::{Jwt, Mtls, Trusted};
    let plain = Transport {
        tls: false,
        mutual_tls: false,
        force_trusted_remote: false,
        force_plaintext_jwt: false,
    };
    let tls = Transport { tls: true, ..plain };
    let mtls = Transport {
        tls: true,
        mutual_tls: true,
        ..plain
    };
    let forced = Transport {
        force_trusted_remote: true,
        force_plaintext_jwt: true,
        ..plain
    };
    let remote = ["0.0.0.0:50051".to_owned()];
    let check =
        |mode: AuthMode, off_host: &[String], admin: &[String], t: Transport, want: &[&str]| {
            let problems = off_host_trust(mode, off_host, admin, t);
            assert_eq!(problems.len(), want.len(), "{mode:?} {t:?}: {problems:?}");
            for (problem, start) in problems.iter().zip(want) {
                assert!(problem.starts_with(start), "{problem}");
            }
        };
    check(Trusted, &[], &[], plain, &[]);
    check(Trusted, &remote, &[], plain, &["--auth trusted"]);
    check(Trusted, &remote, &[], tls, &["--auth trusted"]);
    check(Trusted, &remote, &[], mtls, &[]);
    check(Trusted, &remote, &[], forced, &[]);
    check(Trusted, &[], &remote, plain, &["--admin-listen"]);
    check(Jwt, &remote, &[], plain, &["--auth jwt"]);
    check(Jwt, &remote, &[], tls, &[]);
    check(Jwt, &remote, &[], forced, &[]);
    check(Jwt, &[], &remote, plain, &[]);
    check(Mtls, &[], &[], tls, &["--auth mtls"]);
    check(Mtls, &remote, &[], mtls, &[]);
}
