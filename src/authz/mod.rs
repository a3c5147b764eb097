//! Access decisions: a Casbin enforcer plus what vigil needs around it to
//! explain a decision (the file line of each rule, the role path).
//!
//! This module is pure: no IO, no prost, no knowledge of files or reloads.
//! The policy loader builds an [`Engine`] from validated rule lines; a request
//! reads one engine for its whole life.
//!
//! Architecture invariant: a decision is a value ([`Verdict`]), never an
//! error. Anything that goes wrong inside the engine while evaluating denies
//! (fail closed) with the failure as the reason.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
};

mod compiled;
mod go_syntax;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter};
use compiled::Compiled;
pub use compiled::{pattern_problem, Func as MatchingFunction, LinkCondition, Matching};
pub use go_syntax::{block_matcher_expression, go_expression_for_rhai};

mod reference;
mod request;
use reference::*;
pub use request::*;

/// A compiled policy: the enforcer and the indexes that explain its answers.
pub struct Engine {
    enforcer: Enforcer,
    /// The same model compiled for speed, when its matcher allows.
    compiled: Option<Compiled>,
    tokens: Vec<RequestToken>,
    /// Request tokens the matcher orders (`r.sub_level >= r.obj_level`):
    /// Go callers pass numbers there, so a value that spells an integer is
    /// handed to casbin-rs as one ("10" >= "9" as numbers, not as text).
    ordered: Vec<bool>,
    /// `p` rule values → where they were written.
    origins: HashMap<Vec<String>, Origin>,
    /// Rules as written in policy.csv, for those the evaluators hold
    /// rewritten (Go expressions in `eval()` columns in rhai's form):
    /// reasons quote the file, not the rewrite.
    written: HashMap<Vec<String>, Vec<String>>,
    /// Position of `sub` in the `p` line, to walk the role path to it.
    policy_subject: Option<usize>,
    /// `g` takes a domain (`g = _, _, _`).
    domain_roles: bool,
    /// `g` grants: domain (or `DEFAULT`) → member → roles, in policy order:
    /// role paths, walked for every allowed answer. With `g` the only
    /// grouping this is the compiled evaluator's own graph, which the
    /// decision just walked: the path is found in warm cache.
    grants: std::sync::Arc<compiled::RoleGraph>,
    /// Where each rule of the compiled evaluator came from, by its index.
    compiled_origins: Vec<Option<Origin>>,
    has_roles: bool,
    /// Role names a token may claim (see `is_token_role`).
    token_roles: HashSet<String>,
    policy_rules: usize,
    grouping_rules: usize,
    roles: usize,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("tokens", &self.tokens)
            .field("policy_rules", &self.policy_rules)
            .field("grouping_rules", &self.grouping_rules)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds an engine from a model text and rule lines that were already
    /// checked for arity and duplicates.
    pub async fn build(model_text: &str, rules: &[RuleLine]) -> Result<Engine, EngineError> {
        Engine::build_with_matching(model_text, rules, &HashMap::new()).await
    }

    /// The same, with role definitions whose names or domains are patterns
    /// (a model's `[role_matching]`, Go Casbin's `AddNamedMatchingFunc`):
    /// those models are decided by the compiled evaluator only, since
    /// casbin-rs shares one role manager between definitions.
    pub async fn build_with_matching(
        model_text: &str,
        rules: &[RuleLine],
        matching: &HashMap<String, Matching>,
    ) -> Result<Engine, EngineError> {
        let model = DefaultModel::from_str(model_text)
            .await
            .map_err(|e| EngineError::Model(casbin_message(&e)))?;

        let mut adapter = MemoryAdapter::default();
        let mut by_type: Vec<(&str, Vec<Vec<String>>)> = Vec::new();
        let mut origins = HashMap::new();
        let mut written = HashMap::new();
        // The matcher expressions (`m`, `m2`, …) as casbin-rs holds them.
        let matchers: Vec<String> = casbin::Model::get_model(&model)
            .get("m")
            .map(|m| m.values().map(|a| a.value.clone()).collect())
            .unwrap_or_default();
        let evaluated = eval_columns(&model, &matchers);
        for rule in rules {
            // casbin-rs holds the role part of a conditional grant; the
            // compiled evaluator reads the conditions from `rules`.
            let mut values = match matching.get(&rule.ptype).and_then(|m| m.role_arity) {
                Some(arity) => rule.values[..arity.min(rule.values.len())].to_vec(),
                None => rule.values.clone(),
            };
            // Expressions in rules, written as Go Casbin reads them.
            for &column in evaluated.get(&rule.ptype).into_iter().flatten() {
                if let Some(value) = values.get_mut(column) {
                    *value = go_expression_for_rhai(value);
                }
            }
            if values != rule.values {
                written.insert(values.clone(), rule.values.clone());
            }
            if rule.ptype == "p" {
                origins
                    .entry(values.clone())
                    .or_insert_with(|| rule.origin.clone());
            }
            match by_type.iter_mut().find(|(ptype, _)| *ptype == rule.ptype) {
                Some((_, list)) => list.push(values),
                None => by_type.push((&rule.ptype, vec![values])),
            }
        }
        for (ptype, list) in by_type {
            let sec = &ptype[..1];
            casbin::Adapter::add_policies(&mut adapter, sec, ptype, list)
                .await
                .map_err(|e| EngineError::Policy(casbin_message(&e)))?;
        }
        let mut enforcer = Enforcer::new(model, adapter)
            .await
            .map_err(|e| EngineError::Policy(casbin_message(&e)))?;
        register_safe_functions(&mut enforcer);
        let sections = enforcer.get_model().get_model();
        let request = sections
            .get("r")
            .and_then(|section| section.get("r"))
            .ok_or(EngineError::NoRequestDefinition)?;
        let tokens = request
            .tokens
            .iter()
            .map(|t| RequestToken::from_name(t.strip_prefix("r_").unwrap_or(t)))
            .collect();
        let ordered = ordered_tokens(&request.tokens, &matchers);
        let policy_subject = sections
            .get("p")
            .and_then(|section| section.get("p"))
            .and_then(|p| p.tokens.iter().position(|t| t == "p_sub"));
        let grouping = sections.get("g").and_then(|section| section.get("g"));
        let domain_roles = grouping.is_some_and(|g| g.value.matches('_').count() >= 3);
        let role_names: HashSet<&str> = grouping
            .map(|g| {
                g.policy
                    .iter()
                    .filter_map(|rule| rule.get(1).map(String::as_str))
                    .collect()
            })
            .unwrap_or_default();

        let compiled = compile(&enforcer, model_text, rules, matching);
        if !matching.is_empty() && compiled.is_none() {
            return Err(EngineError::Model(
                "[role_matching] needs a matcher of role checks, ==, !=, &&, ||, ! and casbin's \
                 pattern functions with a standard effect; this one is outside it"
                    .to_owned(),
            ));
        }
        let only_g = sections
            .get("g")
            .is_some_and(|section| section.len() == 1 && section.contains_key("g"));
        let grants = match &compiled {
            Some(compiled) if only_g => compiled.role_graph(),
            _ => std::sync::Arc::new(compiled::build_role_graph(
                rules
                    .iter()
                    .filter(|r| r.ptype == "g")
                    .map(|r| r.values.as_slice()),
            )),
        };
        let compiled_origins = match &compiled {
            Some(compiled) => (0..compiled.len())
                .map(|i| origins.get(compiled.rule(i)).cloned())
                .collect(),
            None => Vec::new(),
        };
        // Names a token's roles claim may use: roles granted in `g`, and
        // rule subjects that are never granted anything themselves (roles
        // that only tokens hand out). A user's name is neither.
        let members: HashSet<&str> = grouping
            .map(|g| {
                g.policy
                    .iter()
                    .filter_map(|r| r.first().map(String::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let mut token_roles: HashSet<String> = role_names.iter().map(|r| r.to_string()).collect();
        if let Some(slot) = policy_subject {
            token_roles.extend(
                rules
                    .iter()
                    .filter(|r| r.ptype.starts_with('p'))
                    .filter_map(|r| r.values.get(slot))
                    .filter(|s| !members.contains(s.as_str()))
                    .cloned(),
            );
        }
        Ok(Engine {
            token_roles,
            compiled_origins,
            grants,
            compiled,
            tokens,
            ordered,
            origins,
            written,
            policy_subject,
            domain_roles,
            has_roles: grouping.is_some(),
            policy_rules: rules.iter().filter(|r| r.ptype.starts_with('p')).count(),
            grouping_rules: rules.iter().filter(|r| r.ptype.starts_with('g')).count(),
            roles: role_names.len(),
            enforcer,
        })
    }

    /// Whether a token's roles claim may name `role`: a role of the policy
    /// (granted in `g`, or a rule subject never granted anything itself),
    /// not a user, whose permissions a token must not hand out.
    pub fn is_token_role(&self, role: &str) -> bool {
        self.token_roles.contains(role)
    }

    /// Whether decisions use the compiled evaluator (else casbin-rs).
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    pub fn policy_rules(&self) -> usize {
        self.policy_rules
    }

    pub fn grouping_rules(&self) -> usize {
        self.grouping_rules
    }

    pub fn roles(&self) -> usize {
        self.roles
    }

    /// Every role `subject` holds through `g` grants (in `domain` for
    /// domain models), nearest first.
    pub fn roles_of(&self, subject: &str, domain: &str) -> Vec<String> {
        self.grant_walk(subject, domain, None)
            .iter()
            .skip(1)
            .map(|(role, _)| (*role).to_owned())
            .collect()
    }

    /// Breadth-first over `g` grants in policy order from `start` (in
    /// `domain` for domain models): each name reached with the index of the
    /// name it was reached from, `start` first. Stops at `target` when
    /// given, and after `MAX_PATH_SEARCH` names (this serves explanations;
    /// no decision depends on it). Role sets are small: the flat list is
    /// queue and visited set at once.
    fn grant_walk<'a>(
        &'a self,
        start: &'a str,
        domain: &str,
        target: Option<&str>,
    ) -> Vec<(&'a str, usize)> {
        let domain = if self.domain_roles {
            domain
        } else {
            compiled::DEFAULT_DOMAIN
        };
        let grants = self.grants.get(domain);
        let mut nodes: Vec<(&str, usize)> = vec![(start, usize::MAX)];
        let mut next = 0;
        while next < nodes.len() && nodes.len() <= MAX_PATH_SEARCH {
            let name = nodes[next].0;
            if target == Some(name) {
                nodes.truncate(next + 1);
                break;
            }
            for role in grants.and_then(|m| m.get(name)).into_iter().flatten() {
                if !nodes.iter().any(|(seen, _)| *seen == role.as_str()) {
                    nodes.push((role, next));
                }
            }
            next += 1;
        }
        nodes
    }

    /// Whether `subject` reaches `role` through `g` grants (in `domain`
    /// for domain models), without building the list of its roles.
    pub fn holds_role(&self, subject: &str, domain: &str, role: &str) -> bool {
        subject != role
            && self
                .grant_walk(subject, domain, Some(role))
                .last()
                .is_some_and(|(reached, _)| *reached == role)
    }

    /// Whether the policy's role graph gives `subject` the role `role`.
    pub fn has_role(&self, subject: &str, role: &str) -> bool {
        self.has_roles
            && self
                .enforcer
                .get_role_manager()
                .read()
                .has_link(subject, role, None)
    }

    /// Decides one request.
    ///
    /// Extra roles count as if the policy granted them to the subject: the
    /// request is evaluated for the subject and for each role; an explicit
    /// deny for any of them wins, otherwise any permit allows.
    pub fn decide(&self, request: &AccessRequest<'_>) -> Result<Verdict, RequestError> {
        self.decide_with(request, self.compiled.is_some())
    }

    /// The same decision made by casbin-rs alone: the reference the
    /// compiled evaluator is tested against.
    pub fn decide_reference(&self, request: &AccessRequest<'_>) -> Result<Verdict, RequestError> {
        self.decide_with(request, false)
    }

    /// Evaluates the matcher once on a blank request, to find what would
    /// fail every request: a function or request token the matcher names
    /// that does not exist (`keyMatc(...)`, `r.sbu`), or a property of a
    /// request value (`r.sub.Age`: values are strings, which have none).
    /// Failures that depend on the values (an address `ipMatch` cannot
    /// parse) are not this.
    pub fn probe_matcher(&self) -> Option<String> {
        let attributes: HashMap<String, String> = self
            .tokens
            .iter()
            .filter_map(|t| match t {
                RequestToken::Attribute(name) => Some((name.clone(), String::new())),
                _ => None,
            })
            .collect();
        let blank = AccessRequest {
            subject: "",
            extra_roles: &[],
            object: "",
            action: "",
            domain: "",
            attributes: &attributes,
        };
        match self.decide_reference(&blank) {
            Ok(Verdict::Deny(Denial::EngineFailure(why)))
                if why.contains("not found") || why.contains("Unknown property") =>
            {
                Some(why)
            }
            _ => None,
        }
    }

    /// One evaluation: allowed, and the rule casbin-rs's explanation names.
    fn evaluate(
        &self,
        values: &[&str],
        use_compiled: bool,
    ) -> Result<(bool, Option<MatchedRule>), String> {
        if let (true, Some(compiled)) = (use_compiled, &self.compiled) {
            let (allowed, rule) = compiled.decide(values)?;
            return Ok((
                allowed,
                rule.map(|i| {
                    self.matched_rule(
                        compiled.rule(i),
                        self.compiled_origins.get(i).cloned().flatten(),
                    )
                }),
            ));
        }
        // casbin-rs panics on a few malformed states instead of returning
        // errors; a panic must deny, not take the server down.
        let owned: Vec<Arg> = values
            .iter()
            .zip(self.ordered.iter().chain(std::iter::repeat(&false)))
            .map(|(value, ordered)| Arg::of(value, *ordered))
            .collect();
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            casbin::CoreApi::enforce_ex(&self.enforcer, owned)
        }));
        match answer {
            Ok(Ok((allowed, mut rules))) => {
                // With deny-override effects the explanation lists the
                // allows seen first and the deciding deny last.
                let deciding = if allowed {
                    rules.drain(..).next()
                } else {
                    rules.pop()
                };
                Ok((
                    allowed,
                    deciding.map(|rule| {
                        let origin = self.origins.get(&rule).cloned();
                        self.matched_rule(&rule, origin)
                    }),
                ))
            }
            Ok(Err(e)) => Err(casbin_message(&e)),
            Err(_) => Err("the Casbin engine panicked".into()),
        }
    }

    fn decide_with(
        &self,
        request: &AccessRequest<'_>,
        use_compiled: bool,
    ) -> Result<Verdict, RequestError> {
        let mut values = self.request_values(request)?;
        let subject_slot = self.tokens.iter().position(|t| *t == RequestToken::Subject);

        let mut permit = None;
        let candidates = std::iter::once(request.subject).chain(
            request
                .extra_roles
                .iter()
                .map(String::as_str)
                .filter(|role| *role != request.subject),
        );
        for candidate in candidates {
            if let Some(slot) = subject_slot {
                values[slot] = candidate;
            }
            let (allowed, rule) = match self.evaluate(&values, use_compiled) {
                Ok(answer) => answer,
                Err(why) => return Ok(Verdict::Deny(Denial::EngineFailure(why))),
            };
            if allowed {
                if permit.is_none() {
                    let role_path = self.role_path(request, candidate, rule.as_ref());
                    permit = Some(Verdict::Permit { rule, role_path });
                }
            } else if let Some(rule) = rule {
                let role_path = self.role_path(request, candidate, Some(&rule));
                return Ok(Verdict::Deny(Denial::Rule { rule, role_path }));
            }
            if subject_slot.is_none() {
                // Without a subject token the candidates cannot differ.
                break;
            }
        }
        let takes_domain = self.tokens.contains(&RequestToken::Domain);
        Ok(permit.unwrap_or(Verdict::Deny(
            if takes_domain && request.domain.is_empty() {
                Denial::NoDomain
            } else {
                Denial::NoMatch
            },
        )))
    }

    fn request_values<'r>(
        &self,
        request: &AccessRequest<'r>,
    ) -> Result<Vec<&'r str>, RequestError> {
        self.tokens
            .iter()
            .map(|token| match token {
                RequestToken::Subject => Ok(request.subject),
                RequestToken::Domain => Ok(request.domain),
                RequestToken::Object => Ok(request.object),
                RequestToken::Action => Ok(request.action),
                RequestToken::Attribute(name) => request
                    .attributes
                    .get(name)
                    .map(String::as_str)
                    .ok_or_else(|| RequestError::MissingToken {
                        token: name.clone(),
                        source_field: format!("attributes[\"{name}\"]"),
                    }),
            })
            .collect()
    }

    fn matched_rule(&self, values: &[String], origin: Option<Origin>) -> MatchedRule {
        let shown = match self.written.is_empty() {
            true => values,
            false => self.written.get(values).map_or(values, Vec::as_slice),
        };
        let mut text = String::with_capacity(shown.iter().map(|v| v.len() + 2).sum::<usize>() + 1);
        text.push('p');
        for value in shown {
            text.push_str(", ");
            text.push_str(value);
        }
        let subject = self.policy_subject.and_then(|i| values.get(i)).cloned();
        MatchedRule {
            origin,
            text,
            subject,
        }
    }

    /// The chain of role grants from the request's subject (through `start`,
    /// a token role, if that is what was evaluated) to the subject of
    /// `rule`, shortest first found over the `g` graph. Empty when no roles
    /// were needed, or when the rule's subject is reached only through
    /// pattern matching.
    fn role_path(
        &self,
        request: &AccessRequest<'_>,
        start: &str,
        rule: Option<&MatchedRule>,
    ) -> Vec<String> {
        let mut path = if start != request.subject {
            vec![request.subject.to_owned()]
        } else {
            Vec::new()
        };
        let target = rule.and_then(|rule| rule.subject.as_deref());
        let chain = match target {
            Some(target) if target != start => {
                if !self.has_roles {
                    return Vec::new();
                }
                if let Some(compiled) = self.compiled.as_ref().filter(|c| c.has_typed_roles()) {
                    // Pattern roles: the walk that decided, patterns the
                    // names matched included.
                    let domain = self.domain_roles.then_some(request.domain);
                    let chain = compiled
                        .typed_role_path("g", start, target, domain)
                        .unwrap_or_else(|| vec![start.to_owned()]);
                    if path.is_empty() && chain.len() == 1 {
                        return path;
                    }
                    path.extend(chain);
                    return path;
                }
                let walk = self.grant_walk(start, request.domain, Some(target));
                match walk.last() {
                    Some((reached, _)) if *reached == target => {
                        let mut chain = Vec::new();
                        let mut cursor = walk.len() - 1;
                        while cursor != usize::MAX {
                            chain.push(walk[cursor].0.to_owned());
                            cursor = walk[cursor].1;
                        }
                        chain.reverse();
                        chain
                    }
                    _ => vec![start.to_owned()],
                }
            }
            _ => vec![start.to_owned()],
        };
        if path.is_empty() && chain.len() == 1 {
            // The subject itself holds the rule: no path to show.
            return path;
        }
        path.extend(chain);
        path
    }
}

/// Most roles visited when looking for a role path (the search is for an
/// explanation; a decision never depends on it).
const MAX_PATH_SEARCH: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_are_told_in_words() {
        let eval = r#"Casbin Evaluation Error: `ErrorInFunctionCall("eval", "", ErrorDotExpr("Unknown property 'Age' - a getter is not registered for type 'string'", 1:7), 1:6)`"#;
        assert_eq!(
            rhai_message(eval).as_deref(),
            Some("Unknown property 'Age' - a getter is not registered for type 'string'")
        );
        let missing = r#"ErrorFunctionNotFound("keyMatc (&str | ImmutableString | String, &str | ImmutableString | String)", 1:1)"#;
        assert_eq!(
            rhai_message(missing).as_deref(),
            Some("function not found: keyMatc")
        );
        assert_eq!(rhai_message(r#"Model Error: M("no matcher")"#), None);
    }

    const RBAC: &str =
        "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n\
        [role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n\
        [matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n";

    fn rule(ptype: &str, values: &[&str], line: usize) -> RuleLine {
        RuleLine {
            ptype: ptype.to_owned(),
            values: values.iter().map(|v| v.to_string()).collect(),
            origin: Origin {
                file: "policy.csv".into(),
                line,
            },
        }
    }

    fn check(
        engine: &Engine,
        subject: &str,
        roles: &[&str],
        object: &str,
        action: &str,
        expect: &str,
    ) {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let attributes = HashMap::new();
        let request = AccessRequest {
            subject,
            extra_roles: &roles,
            object,
            action,
            domain: "",
            attributes: &attributes,
        };
        let verdict = engine.decide(&request).unwrap();
        assert_eq!(verdict.reason(&request), expect);
    }

    /// keyMatch beside `||` (so not the indexed conjunct) and globMatch,
    /// with multibyte request values: decided, never a panic.
    #[tokio::test]
    async fn pattern_functions_take_any_request_value() {
        let model = "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n\
            [policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\n\
            m = r.sub == p.sub && (keyMatch(r.obj, p.obj) || r.act == \"admin\") && r.act == p.act\n";
        let engine = Engine::build(model, &[rule("p", &["alice", "/a*", "read"], 1)])
            .await
            .unwrap();
        let attributes = HashMap::new();
        for (object, allowed) in [("/é…", false), ("/a/é", true), ("/", false)] {
            let request = AccessRequest {
                subject: "alice",
                extra_roles: &[],
                object,
                action: "read",
                domain: "",
                attributes: &attributes,
            };
            assert_eq!(
                engine.decide(&request).unwrap().allowed(),
                allowed,
                "{object}"
            );
            assert_eq!(
                engine.decide_reference(&request).unwrap().allowed(),
                allowed,
                "casbin-rs on {object}"
            );
        }
    }

    #[tokio::test]
    async fn reasons_name_the_rule_and_the_role_path() {
        let rules = [
            rule("p", &["viewer", "crm.customers", "read"], 1),
            rule("g", &["analyst", "viewer"], 2),
            rule("g", &["alice", "analyst"], 3),
        ];
        let engine = Engine::build(RBAC, &rules).await.unwrap();
        check(
            &engine,
            "alice",
            &[],
            "crm.customers",
            "read",
            "allowed by policy.csv:1 [p, viewer, crm.customers, read] via alice → analyst → viewer",
        );
        check(
            &engine,
            "viewer",
            &[],
            "crm.customers",
            "read",
            "allowed by policy.csv:1 [p, viewer, crm.customers, read]",
        );
        check(
            &engine,
            "bob",
            &[],
            "crm.customers",
            "read",
            "no policy rule allows bob to read crm.customers",
        );
        check(
            &engine,
            "bob",
            &["analyst"],
            "crm.customers",
            "read",
            "allowed by policy.csv:1 [p, viewer, crm.customers, read] via bob → analyst → viewer",
        );
        check(
            &engine,
            "alice",
            &[],
            "crm.customers",
            "write",
            "no policy rule allows alice to write crm.customers",
        );
    }

    #[tokio::test]
    async fn a_missing_attribute_names_the_token() {
        let model = RBAC
            .replace("r = sub, obj, act", "r = sub, obj, act, ip")
            .replace("r.act == p.act", "r.act == p.act && r.ip != \"\"");
        let engine = Engine::build(&model, &[]).await.unwrap();
        let attributes = HashMap::new();
        let request = AccessRequest {
            subject: "a",
            extra_roles: &[],
            object: "o",
            action: "r",
            domain: "",
            attributes: &attributes,
        };
        let err = engine.decide(&request).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the model's request line needs token `ip`, but the request has no attributes[\"ip\"]"
        );
    }
}
