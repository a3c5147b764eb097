//! `vigil policy check|test|diff`: authoring tools for policy directories.

use std::process::ExitCode;

use anyhow::Context;
use vigil::{
    cli::{PolicyDiffArgs, PolicyDirArgs, PolicyTestArgs},
    policy::{cases, diff, lint, PolicySet},
};

pub async fn check(args: PolicyDirArgs) -> anyhow::Result<ExitCode> {
    let report = lint::lint(&args.policies).await;
    for problem in &report.errors {
        println!("{}", with_severity(problem, "error"));
    }
    for problem in &report.warnings {
        println!("{}", with_severity(problem, "warning"));
    }
    println!(
        "{} error(s), {} warning(s) in {}",
        report.errors.len(),
        report.warnings.len(),
        args.policies.display()
    );
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn with_severity(problem: &vigil::policy::files::Problem, severity: &str) -> String {
    let place = if problem.line == 0 {
        problem.file.clone()
    } else {
        format!("{}:{}", problem.file, problem.line)
    };
    if place.is_empty() {
        format!("{severity}: {}", problem.message)
    } else {
        format!("{place}: {severity}: {}", problem.message)
    }
}

pub async fn test(args: PolicyTestArgs) -> anyhow::Result<ExitCode> {
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let path = args
        .cases
        .unwrap_or_else(|| args.policies.join(cases::DEFAULT_CASES_FILE));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read cases file {}", path.display()))?;
    let file = cases::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let outcomes = cases::run(&policy, &file);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for outcome in &outcomes {
        match &outcome.failure {
            None => println!("ok   {}", outcome.label),
            Some(why) => println!("FAIL {}: {why}", outcome.label),
        }
    }
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn diff(args: PolicyDiffArgs) -> anyhow::Result<ExitCode> {
    let live = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let candidate = PolicySet::load(&args.candidate)
        .await
        .with_context(|| format!("policy in {}", args.candidate.display()))?;
    let read = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join(vigil::policy::files::POLICY_FILE)).unwrap_or_default()
    };
    let rules = diff::rule_diff(&read(&args.policies), &read(&args.candidate));
    println!("policy {} -> {}", live.version, candidate.version);
    for line in &rules.added {
        println!("+ {line}");
    }
    for line in &rules.removed {
        println!("- {line}");
    }
    println!(
        "{} rule(s) added, {} removed",
        rules.added.len(),
        rules.removed.len()
    );
    if let Some(audit_dir) = &args.from_audit {
        let replay = diff::replay(audit_dir, &live, &candidate)?;
        for change in &replay.changes {
            let word = |allowed: bool| if allowed { "allow" } else { "deny" };
            println!(
                "seq {}: {}: {} -> {} ({})",
                change.seq,
                change.request,
                word(change.live),
                word(change.candidate),
                change.candidate_reason
            );
        }
        let to_deny = replay.changes.iter().filter(|c| c.live).count();
        println!(
            "{} decision(s) replayed, {} would change ({} allow -> deny, {} deny -> allow), {} not replayable (HMAC'd values)",
            replay.replayed,
            replay.changes.len(),
            to_deny,
            replay.changes.len() - to_deny,
            replay.not_replayable
        );
    }
    Ok(ExitCode::SUCCESS)
}
