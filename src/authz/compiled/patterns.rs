//! Role definitions with matching functions, as Go Casbin's
//! `AddNamedMatchingFunc` / `AddNamedDomainMatchingFunc` set them up, and
//! as a vigil model states them in its `[role_matching]` section:
//!
//! ```ini
//! [role_matching]
//! g2 = keyMatch2          # names in g2 rules are patterns: /book/:id
//! g.domain = keyMatch     # domains in g rules are patterns: tenant-*
//! ```
//!
//! Each definition has its own graph (Go keeps one role manager per
//! definition; casbin-rs shares one, which is why such models are
//! evaluated here and never by casbin-rs). A name holds the roles granted
//! to it and to every pattern it matches; a role satisfies a check when it
//! is the wanted role or matches it as a pattern; a domain sees the grants
//! of every domain pattern it matches.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{functions::PatternFunctions, roles::DEFAULT_DOMAIN, Func};

/// One role definition's grants and matching functions.
#[derive(Debug, Default)]
pub(crate) struct TypedRoles {
    /// Domain → member → roles granted to it directly, in policy order.
    graph: HashMap<String, HashMap<String, Vec<String>>>,
    names: Option<Func>,
    domains: Option<Func>,
    /// Domain → members that may be patterns under `names`.
    pattern_members: HashMap<String, Vec<String>>,
}

/// What `[role_matching]` says of one definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matching {
    pub names: Option<Func>,
    pub domains: Option<Func>,
}

/// Most names one walk visits: a decision must stay bounded whatever the
/// policy (Go's role manager has a depth limit for the same reason).
const MAX_WALK: usize = 10_000;

impl TypedRoles {
    pub(crate) fn build<'r>(
        rules: impl IntoIterator<Item = &'r [String]>,
        matching: Matching,
    ) -> TypedRoles {
        let mut graph: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
        for rule in rules {
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
        let mut pattern_members = HashMap::new();
        if let Some(names) = matching.names {
            for (domain, members) in &graph {
                let patterns: Vec<String> = members
                    .keys()
                    .filter(|member| names.may_be_pattern(member))
                    .cloned()
                    .collect();
                pattern_members.insert(domain.clone(), patterns);
            }
        }
        TypedRoles {
            graph,
            names: matching.names,
            domains: matching.domains,
            pattern_members,
        }
    }

    fn matches(
        &self,
        functions: &PatternFunctions,
        func: Option<Func>,
        key: &str,
        pattern: &str,
    ) -> bool {
        func.is_some_and(|func| functions.call(func, key, pattern).unwrap_or(false))
    }

    /// The domains whose grants count in `domain`: itself and every domain
    /// pattern it matches.
    fn domains_of<'a>(&'a self, functions: &PatternFunctions, domain: &'a str) -> Vec<&'a str> {
        let mut found = vec![domain];
        if self.domains.is_some() {
            for candidate in self.graph.keys() {
                if candidate != domain && self.matches(functions, self.domains, domain, candidate) {
                    found.push(candidate);
                }
            }
        }
        found
    }

    /// Whether `member` holds `role` (in `domain`): the walk, with each
    /// step's predecessor so a caller can show the path.
    pub(crate) fn walk(
        &self,
        functions: &PatternFunctions,
        member: &str,
        role: &str,
        domain: Option<&str>,
    ) -> Option<Vec<String>> {
        let satisfies =
            |name: &str| name == role || self.matches(functions, self.names, name, role);
        if satisfies(member) {
            return Some(vec![member.to_owned()]);
        }
        let domains = self.domains_of(functions, domain.unwrap_or(DEFAULT_DOMAIN));
        // (name, index of the name it was reached from)
        let mut reached: Vec<(String, usize)> = vec![(member.to_owned(), usize::MAX)];
        let mut seen: HashSet<String> = HashSet::new();
        seen.insert(member.to_owned());
        let mut next = 0;
        while next < reached.len() && reached.len() < MAX_WALK {
            let name = reached[next].0.clone();
            let from = next;
            next += 1;
            let mut step = |parent: &str, via: Option<&str>, reached: &mut Vec<(String, usize)>| {
                let mut from = from;
                if let Some(pattern) = via {
                    // Show the pattern the name matched as a step of its own.
                    if seen.insert(pattern.to_owned()) {
                        reached.push((pattern.to_owned(), from));
                    }
                    from = reached
                        .iter()
                        .position(|(n, _)| n == pattern)
                        .unwrap_or(from);
                }
                if seen.insert(parent.to_owned()) {
                    reached.push((parent.to_owned(), from));
                    return satisfies(parent);
                }
                false
            };
            for domain in &domains {
                let Some(members) = self.graph.get(*domain) else {
                    continue;
                };
                for parent in members.get(&name).into_iter().flatten() {
                    if step(parent, None, &mut reached) {
                        return Some(path_to_end(&reached));
                    }
                }
                for pattern in self.pattern_members.get(*domain).into_iter().flatten() {
                    if *pattern == name || !self.matches(functions, self.names, &name, pattern) {
                        continue;
                    }
                    for parent in members.get(pattern).into_iter().flatten() {
                        if step(parent, Some(pattern), &mut reached) {
                            return Some(path_to_end(&reached));
                        }
                    }
                }
            }
        }
        None
    }
}

/// The chain from the walk's start to its last name.
fn path_to_end(reached: &[(String, usize)]) -> Vec<String> {
    let mut chain = Vec::new();
    let mut cursor = reached.len() - 1;
    while cursor != usize::MAX {
        chain.push(reached[cursor].0.clone());
        cursor = reached[cursor].1;
    }
    chain.reverse();
    chain
}
