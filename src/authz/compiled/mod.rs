//! A compiled evaluator for the matcher shapes nearly every policy uses, so
//! a decision costs the same at 100,000 rules as at 10.
//!
//! casbin-rs evaluates the matcher (a rhai script) once per policy line: a
//! linear scan, ~1 µs per line. Here the matcher is parsed once into a small
//! expression tree; when it is a conjunction containing `r.x == p.y` or a
//! role check `g(r.x, p.y[, r.dom])`, the rules are indexed on that policy
//! field, so a request only looks at the rules that could match. Everything
//! the tree does is what Casbin does: role checks are reachability in the
//! same role graph casbin-rs builds (one graph per domain, shared by `g`,
//! `g2`, …, as casbin-rs 2.20 does; its depth limit never triggers in
//! practice, see `linked`), pattern functions are casbin-rs's own functions
//! (with their compiled regexes cached), effects follow casbin-rs's
//! effector, including which rule it reports.
//!
//! Anything outside this subset (arithmetic, `in`, attribute access, other
//! functions, custom effects) is not compiled: the engine falls back to
//! casbin-rs for that model. `tests/it/differential.rs` checks both agree.
//!
//! Seams: [`parse`] (matcher → [`Expr`]), [`roles`] (the role graph and its
//! walk), [`functions`] (casbin's pattern functions); this module indexes
//! rules and evaluates.

mod functions;
pub use functions::{glob_match, key_get, key_match, pattern_problem};
mod parse;
mod patterns;
mod roles;

use std::sync::Arc;

// Every lookup of a decision goes through these maps, keyed by policy
// values the operator wrote: a fast hasher (randomly seeded per process)
// instead of SipHash, whose flooding resistance protects insertions that
// requests never make.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use functions::PatternFunctions;
use parse::parse_matcher;
use patterns::TypedRoles;
pub use patterns::{LinkCondition, Matching};
pub(crate) use roles::{build_role_graph, RoleGraph, DEFAULT_DOMAIN};
use roles::{walk_up, within_casbin_depth};

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Request(usize),
    Policy(usize),
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    KeyMatch,
    KeyMatch2,
    KeyMatch3,
    KeyMatch4,
    KeyMatch5,
    RegexMatch,
    GlobMatch,
    IpMatch,
}

impl Func {
    /// The function a matcher (or a `[role_matching]` line) names.
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "keyMatch" => Func::KeyMatch,
            "keyMatch2" => Func::KeyMatch2,
            "keyMatch3" => Func::KeyMatch3,
            "keyMatch4" => Func::KeyMatch4,
            "keyMatch5" => Func::KeyMatch5,
            "regexMatch" => Func::RegexMatch,
            "globMatch" => Func::GlobMatch,
            "ipMatch" => Func::IpMatch,
            _ => return None,
        })
    }

    pub const NAMES: [&'static str; 8] = [
        "keyMatch",
        "keyMatch2",
        "keyMatch3",
        "keyMatch4",
        "keyMatch5",
        "regexMatch",
        "globMatch",
        "ipMatch",
    ];

    /// Whether `name` can match anything but itself under this function:
    /// names without the function's wildcard syntax only match
    /// themselves, so a walk need not try them as patterns.
    fn may_be_pattern(self, name: &str) -> bool {
        match self {
            Func::KeyMatch => name.contains('*'),
            Func::KeyMatch2 => name.contains(':') || name.contains('*'),
            Func::KeyMatch3 | Func::KeyMatch4 | Func::KeyMatch5 => {
                name.contains('{') || name.contains('*')
            }
            Func::GlobMatch => name.contains(['*', '?', '[']),
            Func::RegexMatch | Func::IpMatch => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Eq(Operand, Operand),
    Ne(Operand, Operand),
    /// `g(a, b)` or `g(a, b, dom)`: a role link in casbin-rs's role manager.
    Role(Operand, Operand, Option<Operand>),
    /// The same in a model with `[role_matching]`: a link in the named
    /// definition's own graph, through its matching functions (Go
    /// Casbin's role managers, one per definition).
    TypedRole {
        group: String,
        member: Operand,
        role: Operand,
        domain: Option<Operand>,
    },
    Call(Func, Operand, Operand),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    AllowOverride,
    DenyOverride,
    AllowUnlessDenied,
    Priority,
}

impl Effect {
    pub(crate) fn parse(text: &str) -> Option<Effect> {
        Some(match text.replace("p.eft", "p_eft").as_str() {
            "some(where (p_eft == allow))" => Effect::AllowOverride,
            "some(where (p_eft == allow)) && !some(where (p_eft == deny))" => Effect::DenyOverride,
            "!some(where (p_eft == deny))" => Effect::AllowUnlessDenied,
            "priority(p_eft) || deny" => Effect::Priority,
            _ => return None,
        })
    }
}

thread_local! {
    /// The typed role walks of the decision running on this thread: (group,
    /// member, domain, names reached). Cleared when a decision starts.
    static TYPED_WALKS: std::cell::RefCell<Vec<TypedWalk>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

type TypedWalk = (String, String, Option<String>, foldhash::HashSet<String>);

/// Rule indexes by a policy value.
type RuleIds = HashMap<String, Vec<u32>>;

/// How candidate rules are found for a request.
#[derive(Debug)]
enum Index {
    /// `r.x == p.y` is required: rules by the value of p.y.
    Equal {
        request: usize,
        rules: HashMap<String, Vec<u32>>,
    },
    /// `g(r.x, p.y[, r.d])` is required: rules by p.y, looked up for r.x and
    /// every role r.x holds (in r.d's graph): exactly the rules for which
    /// the role check is true.
    Roles {
        request: usize,
        domain: Option<Operand>,
        rules: HashMap<String, Vec<u32>>,
    },
    /// `keyMatch(r.x, p.y)` is required: rules by their pattern's literal
    /// part. casbin's keyMatch compares the key with the pattern up to its
    /// first `*` (or the whole pattern), so a key's candidates are the
    /// patterns equal to it plus, for each prefix length in use, the
    /// patterns whose prefix equals the key's.
    KeyPrefix {
        request: usize,
        exact: HashMap<String, Vec<u32>>,
        prefixes: Vec<(usize, HashMap<String, Vec<u32>>)>,
    },
    /// `g(r.x, p.y[, r.d])` of a `[role_matching]` definition: rules by p.y,
    /// looked up for every name r.x holds, plus the rules whose p.y may be
    /// a pattern (evaluated in full).
    TypedRoles {
        request: usize,
        group: String,
        domain: Option<Operand>,
        rules: HashMap<String, Vec<u32>>,
        patterned: Vec<u32>,
    },
    /// No usable index: every rule is a candidate.
    Scan,
}

pub(crate) struct Compiled {
    expr: Expr,
    effect: Effect,
    rules: Vec<Vec<String>>,
    eft: Option<usize>,
    index: Index,
    /// Position of the indexed conjunct among the top-level terms: true for
    /// every candidate by construction, so not evaluated again.
    indexed_term: Option<usize>,
    policy_arity: usize,
    /// casbin-rs's graphs (every grouping type merged, as casbin-rs's one
    /// role manager holds them); shared with the engine's role paths.
    graph: Arc<RoleGraph>,
    /// With `[role_matching]`: each role definition's own graph and
    /// matching functions (empty otherwise).
    typed: std::collections::HashMap<String, TypedRoles>,
    functions: PatternFunctions,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("effect", &self.effect)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// The result of one evaluation: allowed, and the index of the rule casbin
/// would report (its `enforce_ex` explanation).
pub(crate) type Outcome = (bool, Option<usize>);

impl Compiled {
    /// Compiles the model's matcher, or `None` if it is outside the subset.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        matcher: &str,
        effect: &str,
        request_tokens: &[String],
        policy_tokens: &[String],
        groupings: &std::collections::HashMap<String, usize>,
        rules: Vec<Vec<String>>,
        groups: &[(String, Vec<Vec<String>>)],
        matching: &std::collections::HashMap<String, Matching>,
    ) -> Option<Compiled> {
        let effect = Effect::parse(effect)?;
        let typed_roles = !matching.is_empty();
        let expr = parse_matcher(
            matcher,
            request_tokens,
            policy_tokens,
            groupings,
            typed_roles,
        )?;
        let eft = policy_tokens.iter().position(|t| t == "p_eft");
        if rules.iter().any(|r| r.len() != policy_tokens.len()) {
            return None;
        }

        let graph = build_role_graph(
            groups
                .iter()
                .flat_map(|(_, rules)| rules.iter().map(Vec::as_slice)),
        );
        // casbin-rs parity matters only where casbin-rs could decide.
        if !typed_roles && !graph.values().all(within_casbin_depth) {
            return None;
        }
        let typed = if typed_roles {
            groups
                .iter()
                .map(|(group, rules)| {
                    let roles = TypedRoles::build(
                        rules.iter().map(Vec::as_slice),
                        matching.get(group).copied().unwrap_or_default(),
                    );
                    (group.clone(), roles)
                })
                .collect()
        } else {
            std::collections::HashMap::new()
        };

        // Pick the most selective indexable top-level conjunct.
        let top: Vec<&Expr> = match &expr {
            Expr::And(terms) => terms.iter().collect(),
            other => vec![other],
        };
        let mut best: Option<(usize, usize, Index)> = None;
        for (position, term) in top.iter().enumerate() {
            if let Expr::Call(Func::KeyMatch, Operand::Request(request), Operand::Policy(policy)) =
                term
            {
                let mut exact: RuleIds = HashMap::new();
                let mut by_length: HashMap<usize, RuleIds> = HashMap::new();
                let mut distinct = HashSet::new();
                for (i, rule) in rules.iter().enumerate() {
                    let pattern = &rule[*policy];
                    distinct.insert(pattern.as_str());
                    match pattern.find('*') {
                        Some(star) => by_length
                            .entry(star)
                            .or_default()
                            .entry(pattern[..star].to_owned())
                            .or_default()
                            .push(i as u32),
                        None => exact.entry(pattern.clone()).or_default().push(i as u32),
                    }
                }
                let selectivity = distinct.len();
                if best.as_ref().is_none_or(|(s, _, _)| selectivity > *s) {
                    let mut prefixes: Vec<(usize, HashMap<String, Vec<u32>>)> =
                        by_length.into_iter().collect();
                    prefixes.sort_by_key(|(length, _)| *length);
                    best = Some((
                        selectivity,
                        position,
                        Index::KeyPrefix {
                            request: *request,
                            exact,
                            prefixes,
                        },
                    ));
                }
                continue;
            }
            let (request, policy, domain, is_role) = match term {
                Expr::Eq(Operand::Request(r), Operand::Policy(p))
                | Expr::Eq(Operand::Policy(p), Operand::Request(r)) => (*r, *p, None, false),
                Expr::Role(Operand::Request(r), Operand::Policy(p), domain) => {
                    if domain
                        .as_ref()
                        .is_some_and(|d| matches!(d, Operand::Policy(_)))
                    {
                        continue;
                    }
                    (*r, *p, domain.clone(), true)
                }
                _ => continue,
            };
            let mut by_value: HashMap<String, Vec<u32>> = HashMap::new();
            for (i, rule) in rules.iter().enumerate() {
                by_value
                    .entry(rule[policy].clone())
                    .or_default()
                    .push(i as u32);
            }
            let selectivity = by_value.len();
            if best.as_ref().is_none_or(|(s, _, _)| selectivity > *s) {
                let index = if is_role {
                    Index::Roles {
                        request,
                        domain,
                        rules: by_value,
                    }
                } else {
                    Index::Equal {
                        request,
                        rules: by_value,
                    }
                };
                best = Some((selectivity, position, index));
            }
        }
        {
            // A typed role check on a request token: index its rules by the
            // names the request's value holds.
            for term in &top {
                let Expr::TypedRole {
                    group,
                    member: Operand::Request(request),
                    role: Operand::Policy(policy),
                    domain,
                } = term
                else {
                    continue;
                };
                if domain
                    .as_ref()
                    .is_some_and(|d| matches!(d, Operand::Policy(_)))
                {
                    continue;
                }
                let Some(roles) = typed.get(group) else {
                    continue;
                };
                let mut by_value: HashMap<String, Vec<u32>> = HashMap::new();
                let mut patterned = Vec::new();
                for (i, rule) in rules.iter().enumerate() {
                    if roles.may_be_pattern(&rule[*policy]) {
                        patterned.push(i as u32);
                    } else {
                        by_value
                            .entry(rule[*policy].clone())
                            .or_default()
                            .push(i as u32);
                    }
                }
                let selectivity = by_value.len();
                if best.as_ref().is_some_and(|(s, _, _)| *s >= selectivity) {
                    continue;
                }
                // Candidates are evaluated in full (no term skipped): a
                // patterned rule's role check is not true by construction.
                best = Some((
                    selectivity,
                    usize::MAX,
                    Index::TypedRoles {
                        request: *request,
                        group: group.clone(),
                        domain: domain.clone(),
                        rules: by_value,
                        patterned,
                    },
                ));
                break;
            }
        }
        let indexed_term = best
            .as_ref()
            .map(|(_, position, _)| *position)
            .filter(|position| *position != usize::MAX);
        let index = best.map(|(_, _, index)| index).unwrap_or(Index::Scan);
        let policy_arity = policy_tokens.len();
        Some(Compiled {
            expr,
            effect,
            rules,
            eft,
            index,
            indexed_term,
            policy_arity,
            graph: Arc::new(graph),
            typed,
            functions: PatternFunctions::default(),
        })
    }

    /// With `[role_matching]`: the chain of names by which `member` holds
    /// `role` in definition `group` (patterns it matched included), if it
    /// does.
    pub(crate) fn typed_role_path(
        &self,
        group: &str,
        member: &str,
        role: &str,
        domain: Option<&str>,
    ) -> Option<Vec<String>> {
        self.typed
            .get(group)?
            .walk(&self.functions, member, role, domain)
    }

    /// Whether `member` holds `role` in a typed definition: its reachable
    /// names, walked once per decision and member, hold `role` or match it.
    fn typed_linked(&self, group: &str, member: &str, role: &str, domain: Option<&str>) -> bool {
        let Some(roles) = self.typed.get(group) else {
            return member == role;
        };
        self.with_typed_reached(roles, group, member, domain, |reached| {
            reached.contains(role)
                || (roles.may_be_pattern(role)
                    && reached
                        .iter()
                        .any(|name| roles.satisfies(&self.functions, name, role)))
        })
    }

    /// The names `member` holds in a typed definition, walked once per
    /// decision: the rule index and every candidate's role check share it.
    fn with_typed_reached<R>(
        &self,
        roles: &TypedRoles,
        group: &str,
        member: &str,
        domain: Option<&str>,
        read: impl FnOnce(&foldhash::HashSet<String>) -> R,
    ) -> R {
        TYPED_WALKS.with(|walks| {
            let mut walks = walks.borrow_mut();
            let found = walks
                .iter()
                .position(|(g, m, d, _)| g == group && m == member && d.as_deref() == domain);
            let index = match found {
                Some(index) => index,
                None => {
                    let reached = roles
                        .reachable(&self.functions, member, domain)
                        .into_iter()
                        .collect();
                    walks.push((
                        group.to_owned(),
                        member.to_owned(),
                        domain.map(str::to_owned),
                        reached,
                    ));
                    walks.len() - 1
                }
            };
            read(&walks[index].3)
        })
    }

    pub(crate) fn has_typed_roles(&self) -> bool {
        !self.typed.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn role_graph(&self) -> Arc<RoleGraph> {
        self.graph.clone()
    }

    pub(crate) fn rule(&self, index: usize) -> &[String] {
        &self.rules[index]
    }

    pub(crate) fn decide(&self, request: &[&str]) -> Result<Outcome, String> {
        if !self.typed.is_empty() {
            // Walks of one decision are remembered for its candidates only.
            TYPED_WALKS.with(|walks| walks.borrow_mut().clear());
        }
        if self.rules.is_empty() {
            // Like casbin-rs: with no rules the matcher runs once with empty
            // policy values, and a match counts as an allow.
            let empty = vec![String::new(); self.policy_arity];
            let matched = self.eval(&self.expr, request, &empty)?;
            let allowed = match self.effect {
                Effect::AllowUnlessDenied => true,
                _ => matched,
            };
            return Ok((allowed, None));
        }
        let mut first_allow: Option<usize> = None;
        let mut first_deny: Option<usize> = None;
        let mut first_decisive: Option<(usize, bool)> = None;
        let mut visit = |i: usize| -> Result<(), String> {
            let rule = &self.rules[i];
            if !self.eval_candidate(request, rule)? {
                return Ok(());
            }
            let allow = match self.eft {
                None => Some(true),
                Some(slot) => match rule[slot].as_str() {
                    "allow" => Some(true),
                    "deny" => Some(false),
                    _ => None,
                },
            };
            match allow {
                Some(true) => first_allow = Some(first_allow.map_or(i, |f| f.min(i))),
                Some(false) => first_deny = Some(first_deny.map_or(i, |f| f.min(i))),
                None => {}
            }
            if let Some(allowed) = allow {
                if first_decisive.is_none_or(|(f, _)| i < f) {
                    first_decisive = Some((i, allowed));
                }
            }
            Ok(())
        };
        match &self.index {
            Index::Scan => {
                for i in 0..self.rules.len() {
                    visit(i)?;
                }
            }
            Index::Equal {
                request: slot,
                rules,
            } => {
                if let Some(ids) = rules.get(request[*slot]) {
                    for &i in ids {
                        visit(i as usize)?;
                    }
                }
            }
            Index::KeyPrefix {
                request: slot,
                exact,
                prefixes,
            } => {
                let key = request[*slot];
                if let Some(ids) = exact.get(key) {
                    for &i in ids {
                        visit(i as usize)?;
                    }
                }
                for (length, patterns) in prefixes {
                    // A key no longer than the prefix must equal it; a
                    // longer one must start with it (casbin's key_match).
                    let Some(head) = key.get(..*length.min(&key.len())) else {
                        continue;
                    };
                    if key.len() < *length {
                        continue;
                    }
                    if let Some(ids) = patterns.get(head) {
                        for &i in ids {
                            visit(i as usize)?;
                        }
                    }
                }
            }
            Index::TypedRoles {
                request: slot,
                group,
                domain,
                rules,
                patterned,
            } => {
                let domain = domain.as_ref().map(|d| self.value(d, request, &[]));
                // Each rule is under one value, and patterned rules under
                // none: every candidate is visited once.
                if let Some(roles) = self.typed.get(group) {
                    let candidates: Vec<u32> =
                        self.with_typed_reached(roles, group, request[*slot], domain, |reached| {
                            reached
                                .iter()
                                .flat_map(|name| rules.get(name).into_iter().flatten().copied())
                                .collect()
                        });
                    for i in candidates.into_iter().chain(patterned.iter().copied()) {
                        visit(i as usize)?;
                    }
                }
            }
            Index::Roles {
                request: slot,
                domain,
                rules,
            } => {
                let domain = match domain {
                    Some(operand) => self.value(operand, request, &[]),
                    None => DEFAULT_DOMAIN,
                };
                let subject = request[*slot];
                if let Some(ids) = rules.get(subject) {
                    for &i in ids {
                        visit(i as usize)?;
                    }
                }
                // casbin-rs only walks from names that are in the graph.
                if let Some(graph) = self.graph.get(domain).filter(|g| g.contains_key(subject)) {
                    walk_up(graph, subject, |role| {
                        if let Some(ids) = rules.get(role) {
                            for &i in ids {
                                visit(i as usize)?;
                            }
                        }
                        Ok::<_, String>(false)
                    })?;
                }
            }
        }
        Ok(match self.effect {
            Effect::AllowOverride => (first_allow.is_some(), first_allow),
            Effect::DenyOverride => match first_deny {
                Some(deny) => (false, Some(deny)),
                None => (first_allow.is_some(), first_allow),
            },
            Effect::AllowUnlessDenied => match first_deny {
                Some(deny) => (false, Some(deny)),
                None => (true, None),
            },
            Effect::Priority => match first_decisive {
                Some((i, allowed)) => (allowed, Some(i)),
                None => (false, None),
            },
        })
    }

    fn value<'a>(
        &'a self,
        operand: &'a Operand,
        request: &[&'a str],
        rule: &'a [String],
    ) -> &'a str {
        match operand {
            Operand::Request(i) => request[*i],
            Operand::Policy(i) => &rule[*i],
            Operand::Literal(s) => s,
        }
    }

    /// Evaluates the matcher for a candidate, skipping the indexed term.
    fn eval_candidate(&self, request: &[&str], rule: &[String]) -> Result<bool, String> {
        match (&self.expr, self.indexed_term) {
            (Expr::And(terms), Some(skip)) => {
                for (i, term) in terms.iter().enumerate() {
                    if i != skip && !self.eval(term, request, rule)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            (_, Some(_)) => Ok(true),
            (expr, None) => self.eval(expr, request, rule),
        }
    }

    /// casbin-rs's `has_link`: equal names, or `role` reachable from
    /// `member` in the domain's graph (its depth-limited walk computes
    /// exactly this on the graphs `within_casbin_depth` admits).
    fn linked(&self, member: &str, role: &str, domain: Option<&str>) -> bool {
        if member == role {
            return true;
        }
        let Some(graph) = self.graph.get(domain.unwrap_or(DEFAULT_DOMAIN)) else {
            return false;
        };
        let found: Result<bool, std::convert::Infallible> =
            walk_up(graph, member, |reached| Ok(reached == role));
        found.unwrap_or_else(|never| match never {})
    }

    fn eval(&self, expr: &Expr, request: &[&str], rule: &[String]) -> Result<bool, String> {
        Ok(match expr {
            Expr::And(terms) => {
                for term in terms {
                    if !self.eval(term, request, rule)? {
                        return Ok(false);
                    }
                }
                true
            }
            Expr::Or(terms) => {
                for term in terms {
                    if self.eval(term, request, rule)? {
                        return Ok(true);
                    }
                }
                false
            }
            Expr::Not(inner) => !self.eval(inner, request, rule)?,
            Expr::Bool(b) => *b,
            Expr::Eq(a, b) => self.value(a, request, rule) == self.value(b, request, rule),
            Expr::Ne(a, b) => self.value(a, request, rule) != self.value(b, request, rule),
            Expr::Role(a, b, domain) => {
                let (a, b) = (self.value(a, request, rule), self.value(b, request, rule));
                let domain = domain.as_ref().map(|d| self.value(d, request, rule));
                self.linked(a, b, domain)
            }
            Expr::TypedRole {
                group,
                member,
                role,
                domain,
            } => {
                let (member, role) = (
                    self.value(member, request, rule),
                    self.value(role, request, rule),
                );
                let domain = domain.as_ref().map(|d| self.value(d, request, rule));
                self.typed_linked(group, member, role, domain)
            }
            Expr::Call(func, a, b) => self.functions.call(
                *func,
                self.value(a, request, rule),
                self.value(b, request, rule),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_matchers_and_refuses_the_rest() {
        let r: Vec<String> = ["r_sub", "r_dom", "r_obj", "r_act"]
            .map(String::from)
            .to_vec();
        let p: Vec<String> = ["p_sub", "p_dom", "p_obj", "p_act"]
            .map(String::from)
            .to_vec();
        let g = std::collections::HashMap::from([("g".to_owned(), 3)]);
        let parse = |m: &str| parse_matcher(m, &r, &p, &g, false);
        assert!(parse("g(r_sub, p_sub, r_dom) && r_dom == p_dom && keyMatch(r_obj, p_obj) && (r_act == p_act || p_act == \"*\")").is_some());
        assert!(parse("r_sub == p_sub || r_sub == \"root\"").is_some());
        assert!(parse("r_sub.Age > 18").is_none());
        assert!(parse("r_obj in (\"a\", \"b\")").is_none());
        assert!(parse("customFn(r_sub, p_sub)").is_none());
        assert!(
            parse("g(r_sub, p_sub)").is_none(),
            "wrong arity for a 3-argument g"
        );
    }
}
