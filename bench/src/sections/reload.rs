//! Section (e): start-up and reload at 100,000 policy lines.

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let vigil = run.vigil;
    let settings = run.settings;
    let report = &mut *run.report;
    report.section(
        "(e) Start-up and reload at 100,000 policy lines",
        "| measure | value |",
    );
    let big = write_policy_dir(Shape::Rbac, 100_000);
    let server = Server::start(vigil, big.path(), &[], settings.pinned);
    report.row(format!(
        "| start-up to listening | {:.0} ms |",
        server.started_in.as_secs_f64() * 1e3
    ));
    report.target(
        "start-up with 100,000 policy lines",
        format!("{:.0} ms", server.started_in.as_secs_f64() * 1e3),
        "≤ 1 s".into(),
        server.started_in <= Duration::from_secs(1),
    );
    report.row(format!(
        "| RSS after start-up | {:.1} MB |",
        server.memory("VmRSS") as f64 / 1e6
    ));
    let mut admin = PolicyAdminClient::new(server.admin_channel().await);
    let policy_file = big.path().join("policy.csv");
    let text = std::fs::read_to_string(&policy_file).expect("policy");
    std::fs::write(&policy_file, format!("{text}p, role1, dataset-new, read\n")).expect("edit");
    let started = Instant::now();
    admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .expect("reload");
    report.row(format!(
        "| reload (ReloadPolicies RPC, changed set) | {:.0} ms |",
        started.elapsed().as_secs_f64() * 1e3
    ));
    let requests: Vec<AuthorizeRequest> = scale_requests(Shape::Rbac, 100_000, true, 64)
        .into_iter()
        .map(|(s, o, _)| AuthorizeRequest {
            subject: s,
            object: o,
            action: "read".into(),
            ..Default::default()
        })
        .collect();
    let quiet = drive(
        &server,
        false,
        16,
        Call::Authorize(requests.clone()),
        Generator::Tonic,
        settings,
    )
    .await;
    let reloading = {
        let admin_channel = server.channel(false).await;
        let reloads = tokio::spawn(async move {
            let mut admin = PolicyAdminClient::new(admin_channel);
            let mut count = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if admin
                    .reload_policies(ReloadPoliciesRequest {})
                    .await
                    .is_ok()
                {
                    count += 1;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            count
        });
        let m = drive(
            &server,
            false,
            16,
            Call::Authorize(requests),
            Generator::Tonic,
            settings,
        )
        .await;
        reloads.abort();
        m
    };
    report.row(format!(
        "| Authorize p99, 16 streams, no reload | {} µs |",
        micros(quiet.percentile(0.99))
    ));
    report.row(format!(
        "| Authorize p99, 16 streams, reloading every 300 ms | {} µs (errors: {}) |",
        micros(reloading.percentile(0.99)),
        reloading.errors
    ));
    report.row(format!(
        "| peak RSS with 100,000 lines | {:.1} MB |",
        server.memory("VmHWM") as f64 / 1e6
    ));
    drop(server);
}
