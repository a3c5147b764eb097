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
//! casbin-rs for that model. `tests/differential.rs` checks both agree.

use std::sync::{Arc, RwLock};

use casbin::function_map;
// Every lookup of a decision goes through these maps, keyed by policy
// values the operator wrote: a fast hasher (randomly seeded per process)
// instead of SipHash, whose flooding resistance protects insertions that
// requests never make.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use regex::Regex;

/// casbin-rs's name for the role graph of groupings without a domain.
pub(crate) const DEFAULT_DOMAIN: &str = "DEFAULT";

/// Domain → member → roles granted to it directly, in policy order.
pub(crate) type RoleGraph = HashMap<String, HashMap<String, Vec<String>>>;

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Request(usize),
    Policy(usize),
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Func {
    KeyMatch,
    KeyMatch2,
    KeyMatch3,
    KeyMatch4,
    KeyMatch5,
    RegexMatch,
    GlobMatch,
    IpMatch,
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

// ---- parsing -------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    And,
    Or,
    Not,
    EqEq,
    NotEq,
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                tokens.push(Token::And);
                i += 2
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                tokens.push(Token::Or);
                i += 2
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::EqEq);
                i += 2
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::NotEq);
                i += 2
            }
            '!' => {
                tokens.push(Token::Not);
                i += 1
            }
            '"' => {
                // A plain literal; escapes would need rhai's rules.
                let end = chars[i + 1..].iter().position(|&c| c == '"')? + i + 1;
                let literal: String = chars[i + 1..end].iter().collect();
                if literal.contains('\\') {
                    return None;
                }
                tokens.push(Token::Str(literal));
                i = end + 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            _ => return None,
        }
    }
    Some(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    request: &'a [String],
    policy: &'a [String],
    groupings: &'a std::collections::HashMap<String, usize>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, token: Token) -> Option<()> {
        (self.next()? == token).then_some(())
    }

    fn or(&mut self) -> Option<Expr> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.next();
            terms.push(self.and()?);
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Option<Expr> {
        let mut terms = vec![self.unary()?];
        while self.peek() == Some(&Token::And) {
            self.next();
            terms.push(self.unary()?);
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Option<Expr> {
        if self.peek() == Some(&Token::Not) {
            self.next();
            return Some(Expr::Not(Box::new(self.unary()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Option<Expr> {
        if self.peek() == Some(&Token::Open) {
            self.next();
            let inner = self.or()?;
            self.expect(Token::Close)?;
            return Some(inner);
        }
        if let Some(Token::Ident(name)) = self.peek().cloned() {
            if self.tokens.get(self.at + 1) == Some(&Token::Open) {
                return self.call(&name);
            }
            if name == "true" || name == "false" {
                self.next();
                return Some(Expr::Bool(name == "true"));
            }
        }
        let left = self.operand()?;
        match self.next()? {
            Token::EqEq => Some(Expr::Eq(left, self.operand()?)),
            Token::NotEq => Some(Expr::Ne(left, self.operand()?)),
            _ => None,
        }
    }

    fn call(&mut self, name: &str) -> Option<Expr> {
        self.next();
        self.expect(Token::Open)?;
        let mut args = vec![self.operand()?];
        while self.peek() == Some(&Token::Comma) {
            self.next();
            args.push(self.operand()?);
        }
        self.expect(Token::Close)?;
        if let Some(&arity) = self.groupings.get(name) {
            return match (arity, args.len()) {
                (2, 2) => Some(Expr::Role(args[0].clone(), args[1].clone(), None)),
                (3, 3) => Some(Expr::Role(
                    args[0].clone(),
                    args[1].clone(),
                    Some(args[2].clone()),
                )),
                _ => None,
            };
        }
        let func = match name {
            "keyMatch" => Func::KeyMatch,
            "keyMatch2" => Func::KeyMatch2,
            "keyMatch3" => Func::KeyMatch3,
            "keyMatch4" => Func::KeyMatch4,
            "keyMatch5" => Func::KeyMatch5,
            "regexMatch" => Func::RegexMatch,
            "globMatch" => Func::GlobMatch,
            "ipMatch" => Func::IpMatch,
            _ => return None,
        };
        if args.len() != 2 {
            return None;
        }
        Some(Expr::Call(func, args[0].clone(), args[1].clone()))
    }

    fn operand(&mut self) -> Option<Operand> {
        match self.next()? {
            Token::Str(s) => Some(Operand::Literal(s)),
            Token::Ident(name) => {
                if let Some(i) = self.request.iter().position(|t| *t == name) {
                    Some(Operand::Request(i))
                } else {
                    self.policy
                        .iter()
                        .position(|t| *t == name)
                        .map(Operand::Policy)
                }
            }
            _ => None,
        }
    }
}

// ---- the compiled engine -------------------------------------------------

/// casbin-rs's role manager (`DefaultRoleManager::new(10)`) walks grants
/// breadth-first and stops counting after 10 levels, so a role 10 or more
/// levels above a name does not count there; the compiled evaluator uses
/// plain reachability. They agree exactly when no name in the graph has
/// anything 10 or more levels above it: otherwise the policy is left to
/// casbin-rs. (Its level counter advances at most once per BFS level, so
/// shallower graphs never reach the cut.)
const CASBIN_MAX_HIERARCHY_LEVEL: usize = 10;

fn within_casbin_depth(graph: &HashMap<String, Vec<String>>) -> bool {
    // Bounded work: a graph this expensive to check is left to casbin-rs.
    let mut budget: usize = 20_000_000;
    for start in graph.keys() {
        let mut seen: HashSet<&str> = [start.as_str()].into_iter().collect();
        let mut level: Vec<&str> = vec![start];
        for distance in 1..=CASBIN_MAX_HIERARCHY_LEVEL {
            let mut next = Vec::new();
            for name in &level {
                for parent in graph.get(*name).into_iter().flatten() {
                    budget = match budget.checked_sub(1) {
                        Some(left) => left,
                        None => return false,
                    };
                    if seen.insert(parent) {
                        next.push(parent.as_str());
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            if distance == CASBIN_MAX_HIERARCHY_LEVEL {
                return false;
            }
            level = next;
        }
    }
    true
}

/// Visits every name reachable from `start` in a role graph (not `start`
/// itself), breadth-first, each once, until `reached` says to stop; true if
/// it did. Closures are usually a handful of roles and the walk runs per
/// candidate rule: up to 32 names a list on the stack is queue and visited
/// set at once, with no allocation; past that a queue and a hash set take
/// over.
fn walk_up<'a, E>(
    graph: &'a HashMap<String, Vec<String>>,
    start: &'a str,
    mut reached: impl FnMut(&'a str) -> Result<bool, E>,
) -> Result<bool, E> {
    const SMALL: usize = 32;
    let mut small: [&str; SMALL] = [""; SMALL];
    small[0] = start;
    let mut len = 1;
    let mut large: Option<(Vec<&str>, HashSet<&str>)> = None;
    let mut next = 0;
    loop {
        let name = match &large {
            None if next < len => small[next],
            Some((queue, _)) if next < queue.len() => queue[next],
            _ => return Ok(false),
        };
        next += 1;
        for parent in graph.get(name).into_iter().flatten() {
            let parent = parent.as_str();
            let new = match &mut large {
                Some((queue, seen)) => {
                    let new = seen.insert(parent);
                    if new {
                        queue.push(parent);
                    }
                    new
                }
                None if small[..len].contains(&parent) => false,
                None if len < SMALL => {
                    small[len] = parent;
                    len += 1;
                    true
                }
                None => {
                    let mut queue = small.to_vec();
                    queue.push(parent);
                    let seen = queue.iter().copied().collect();
                    large = Some((queue, seen));
                    true
                }
            };
            if new && reached(parent)? {
                return Ok(true);
            }
        }
    }
}

/// The role graph of grouping rules (`member, role[, domain]`): each grant
/// once, in policy order; self-grants, which no walk needs, left out.
pub(crate) fn build_role_graph<'r>(
    grouping_rules: impl IntoIterator<Item = &'r [String]>,
) -> RoleGraph {
    let mut graph = RoleGraph::new();
    for rule in grouping_rules {
        if rule.len() < 2 || rule[0] == rule[1] {
            continue;
        }
        let domain = rule.get(2).map_or(DEFAULT_DOMAIN, String::as_str);
        let parents = graph
            .entry(domain.to_owned())
            .or_default()
            .entry(rule[0].clone())
            .or_default();
        if !parents.contains(&rule[1]) {
            parents.push(rule[1].clone());
        }
    }
    graph
}

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
    /// Compiled patterns of the regex-based functions, one map per function
    /// (regexMatch, keyMatch2, keyMatch3, keyMatch5), filled on first use.
    regexes: [RwLock<HashMap<String, Option<Arc<Regex>>>>; 4],
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
        grouping_rules: &[Vec<String>],
    ) -> Option<Compiled> {
        let effect = Effect::parse(effect)?;
        let mut parser = Parser {
            tokens: tokenize(matcher)?,
            at: 0,
            request: request_tokens,
            policy: policy_tokens,
            groupings,
        };
        let expr = parser.or()?;
        if parser.at != parser.tokens.len() {
            return None;
        }
        let eft = policy_tokens.iter().position(|t| t == "p_eft");
        if rules.iter().any(|r| r.len() != policy_tokens.len()) {
            return None;
        }

        let graph = build_role_graph(grouping_rules.iter().map(Vec::as_slice));
        if !graph.values().all(within_casbin_depth) {
            return None;
        }

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
        let indexed_term = best.as_ref().map(|(_, position, _)| *position);
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
            regexes: Default::default(),
        })
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
            Expr::Call(func, a, b) => self.call(
                *func,
                self.value(a, request, rule),
                self.value(b, request, rule),
            )?,
        })
    }

    /// casbin-rs's pattern functions; the regex-based ones with their
    /// pattern compiled once (the translation is casbin-rs's).
    fn call(&self, func: Func, key: &str, pattern: &str) -> Result<bool, String> {
        match func {
            Func::KeyMatch => return Ok(function_map::key_match(key, pattern)),
            Func::GlobMatch => return Ok(function_map::glob_match(key, pattern)),
            Func::IpMatch => {
                return std::panic::catch_unwind(|| function_map::ip_match(key, pattern))
                    .map_err(|_| format!("ipMatch: {pattern:?} is not an IP address or CIDR"))
            }
            Func::KeyMatch4 => {
                return std::panic::catch_unwind(|| function_map::key_match4(key, pattern))
                    .map_err(|_| "keyMatch4 failed".to_owned())
            }
            _ => {}
        }
        let slot = match func {
            Func::RegexMatch => 0,
            Func::KeyMatch2 => 1,
            Func::KeyMatch3 => 2,
            _ => 3,
        };
        let cached = self.regexes[slot]
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pattern)
            .cloned();
        let regex = match cached {
            Some(regex) => regex,
            None => {
                let source = match func {
                    Func::RegexMatch => pattern.to_owned(),
                    Func::KeyMatch2 => {
                        let p = if pattern.contains("/*") {
                            pattern.replace("/*", "/.*")
                        } else {
                            pattern.to_owned()
                        };
                        format!(
                            "^{}$",
                            Regex::new(r":[^/]*")
                                .expect("valid regex")
                                .replace_all(&p, "[^/]+")
                        )
                    }
                    Func::KeyMatch3 => {
                        let p = if pattern.contains("/*") {
                            pattern.replace("/*", "/.*")
                        } else {
                            pattern.to_owned()
                        };
                        format!(
                            "^{}$",
                            Regex::new(r"\{[^/]*\}")
                                .expect("valid regex")
                                .replace_all(&p, "[^/]+")
                        )
                    }
                    Func::KeyMatch5 => {
                        let p = pattern.replace("/*", "/.*");
                        format!(
                            "^{}$",
                            Regex::new(r"(\{[^/]+?\})")
                                .expect("valid regex")
                                .replace_all(&p, "[^/]+")
                        )
                    }
                    _ => unreachable!("handled above"),
                };
                let compiled = Regex::new(&source).ok().map(Arc::new);
                self.regexes[slot]
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(pattern.to_owned(), compiled.clone());
                compiled
            }
        };
        let key = if func == Func::KeyMatch5 {
            key.split('?').next().unwrap_or(key)
        } else {
            key
        };
        match regex {
            Some(regex) => Ok(regex.is_match(key)),
            None => Err(format!(
                "pattern {pattern:?} is not a valid regular expression"
            )),
        }
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
        let parse = |m: &str| {
            let mut parser = Parser {
                tokens: tokenize(m)?,
                at: 0,
                request: &r,
                policy: &p,
                groupings: &g,
            };
            let expr = parser.or()?;
            (parser.at == parser.tokens.len()).then_some(expr)
        };
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
