//! `vigil serve`: bind, build, announce, serve until SIGTERM/SIGINT;
//! SIGHUP reloads the policy.

use std::process::ExitCode;

use anyhow::Context;
use vigil::{
    config::Config,
    listen::{Listener, Plane},
    server::App,
};

pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    if config.check_only {
        println!("{}", App::check(&config).await?);
        return Ok(ExitCode::SUCCESS);
    }
    // Installed before anything is announced, so a signal sent as soon as
    // vigil is up stops or reloads it instead of killing the process.
    let shutdown = shutdown_signal().context("cannot install the SIGTERM/SIGINT handlers")?;
    let hangup = hangup_signal().context("cannot install the SIGHUP handler")?;
    let listeners = Listener::bind_planes(
        &config.listeners,
        &config.admin_listeners,
        &config.metrics_listeners,
        &config.http_listeners,
    )
    .await?;
    let app = App::build(config).await?;
    let reloader = app.reloader();
    let reload_task = tokio::spawn(async move {
        let mut hangup = hangup;
        while hangup.recv().await.is_some() {
            reloader.reload("sighup").await;
        }
    });
    for (plane, listener) in &listeners {
        // Supervisors and tests wait for these lines.
        match plane {
            Plane::Data => println!("listening on {}", listener.local_addr()),
            Plane::Admin => println!("admin listening on {}", listener.local_addr()),
            Plane::Metrics => println!("metrics listening on {}", listener.local_addr()),
            Plane::Http => println!("http listening on {}", listener.local_addr()),
        }
    }
    notify_systemd("READY=1\nSTATUS=serving");
    let served = app.serve(listeners, shutdown).await;
    reload_task.abort();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Tells systemd (`Type=notify`) that vigil is ready, once every listener
/// is bound and the audit log is open. Nothing without `NOTIFY_SOCKET`.
/// The protocol is one datagram to that socket (sd_notify(3)); a path
/// starting with `@` is in the abstract namespace.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let socket = UnixDatagram::unbound()?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(&path)?,
        };
        socket.send_to_addr(state.as_bytes(), &address)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd of readiness (NOTIFY_SOCKET)");
    }
}

#[cfg(unix)]
fn hangup_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed before this
/// returns, so a signal that arrives while vigil starts up is not lost (and
/// does not kill the process before the audit log is closed).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
