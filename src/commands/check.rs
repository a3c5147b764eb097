//! `vigil check`: one request decided offline, with the deciding rule.

use std::{collections::HashMap, process::ExitCode};

use anyhow::Context;
use vigil::{
    authz::{AccessRequest, Denial, Verdict},
    cli::CheckArgs,
    policy::PolicySet,
};

pub async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let attributes: HashMap<String, String> = args.attributes.into_iter().collect();
    let request = AccessRequest {
        subject: &args.subject,
        extra_roles: &args.roles,
        object: &args.object,
        action: &args.action,
        domain: &args.domain,
        attributes: &attributes,
    };
    let verdict = policy.engine.decide(&request)?;
    // A request the policy could not evaluate is an error, not a denial
    // (the server denies it, failing closed; a script must not read it as
    // a decision).
    if let Verdict::Deny(Denial::EngineFailure(_)) = &verdict {
        eprintln!("error: {}", verdict.reason(&request));
        return Ok(ExitCode::from(2));
    }
    let word = if verdict.allowed() { "allow" } else { "deny" };
    println!("{word}: {}", verdict.reason(&request));
    if args.explain {
        let held = policy.engine.roles_of(&args.subject, &args.domain);
        let held: Vec<&str> = held
            .iter()
            .map(String::as_str)
            .chain(args.roles.iter().map(String::as_str))
            .collect();
        println!("subject: {}", args.subject);
        println!(
            "roles held: {}",
            if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            }
        );
        println!(
            "engine: {}",
            if policy.engine.is_compiled() {
                "compiled (indexed) evaluator"
            } else {
                "casbin-rs (matcher outside the compiled subset)"
            }
        );
        println!("policy version: {}", policy.version);
    }
    Ok(if verdict.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
