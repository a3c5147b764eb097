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

use foldhash::{HashMap, HashMapExt};

use super::{
    functions::PatternFunctions,
    roles::{build_role_graph, DEFAULT_DOMAIN},
    Func,
};

/// One role definition's grants and matching functions.
#[derive(Debug, Default)]
pub(crate) struct TypedRoles {
    /// Domain → member → roles granted to it directly, in policy order.
    graph: HashMap<String, HashMap<String, Vec<String>>>,
    names: Option<Func>,
    domains: Option<Func>,
    /// Domain → members that may be patterns under `names`, by the literal
    /// text before their first wildcard: a name can only match patterns
    /// whose literal head it starts with (all of casbin's key and glob
    /// patterns are anchored), so a walk tries a handful, not all.
    pattern_members: HashMap<String, PatternHeads>,
    condition: Option<LinkCondition>,
    /// (domain, member, role) → the grant's condition parameters.
    parameters: HashMap<(String, String, String), Vec<String>>,
}

/// What `[role_matching]` (and `[role_definition]`) say of one definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matching {
    pub names: Option<Func>,
    pub domains: Option<Func>,
    /// With condition parameters (`g = _, _, (_, _)`): the fields of the
    /// role part; the rest of each grant are the condition's parameters.
    pub role_arity: Option<usize>,
    pub condition: Option<LinkCondition>,
}

/// When a conditional grant holds (Go Casbin's link condition functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCondition {
    /// Go's `util.TimeMatchFunc`: the grant holds strictly after its start
    /// and strictly before its end (`YYYY-MM-DD HH:MM:SS`, UTC; `_` leaves
    /// that side open).
    TimeMatch,
}

impl LinkCondition {
    fn holds(self, parameters: &[String], now: i64) -> bool {
        match self {
            LinkCondition::TimeMatch => {
                let bound = |text: &str| -> Option<Option<i64>> {
                    if text == "_" {
                        Some(None)
                    } else {
                        seconds_since_epoch(text).map(Some)
                    }
                };
                let (Some(start), Some(end)) = (
                    parameters.first().and_then(|s| bound(s)),
                    parameters.get(1).and_then(|s| bound(s)),
                ) else {
                    // Go's TimeMatch fails on a time it cannot parse: the
                    // grant does not hold.
                    return false;
                };
                start.is_none_or(|start| now > start) && end.is_none_or(|end| now < end)
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC, years 0 to 9999) as seconds since 1970.
fn seconds_since_epoch(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Most names one walk visits: a decision must stay bounded whatever the
/// policy (Go's role manager has a depth limit for the same reason).
const MAX_WALK: usize = 10_000;

impl TypedRoles {
    pub(crate) fn build<'r>(
        rules: impl IntoIterator<Item = &'r [String]>,
        matching: Matching,
    ) -> TypedRoles {
        // The role part of each grant makes the graph; a conditional
        // grant's parameters are kept beside it.
        let mut parameters = HashMap::new();
        let mut role_parts = Vec::new();
        for rule in rules {
            let (rule, condition) = match matching.role_arity {
                Some(arity) if rule.len() >= arity => rule.split_at(arity),
                _ => (rule, &[][..]),
            };
            if rule.len() >= 2 && !condition.is_empty() {
                let domain = rule.get(2).map_or(DEFAULT_DOMAIN, String::as_str);
                parameters.insert(
                    (domain.to_owned(), rule[0].clone(), rule[1].clone()),
                    condition.to_vec(),
                );
            }
            role_parts.push(rule);
        }
        let graph = build_role_graph(role_parts);
        let mut pattern_members = HashMap::new();
        if let Some(names) = matching.names {
            for (domain, members) in &graph {
                let mut heads = PatternHeads::default();
                for member in members.keys().filter(|member| names.may_be_pattern(member)) {
                    heads.insert(names, member);
                }
                pattern_members.insert(domain.clone(), heads);
            }
        }
        TypedRoles {
            graph,
            names: matching.names,
            domains: matching.domains,
            pattern_members,
            condition: matching.condition,
            parameters,
        }
    }

    /// Whether the grant `member → role` in `domain` holds now (always,
    /// without a link condition).
    fn grant_holds(&self, domain: &str, member: &str, role: &str, now: i64) -> bool {
        let Some(condition) = self.condition else {
            return true;
        };
        match self
            .parameters
            .get(&(domain.to_owned(), member.to_owned(), role.to_owned()))
        {
            Some(parameters) => condition.holds(parameters, now),
            None => true,
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

    /// Breadth-first over the names `member` holds in `domain`: its
    /// grants, through every pattern it matches (a step of its own) and
    /// every domain pattern its domain matches, each grant's condition
    /// checked. Entries are (name, index of the entry it was reached
    /// from); `stop` is asked of each new name and ends the walk there.
    fn explore(
        &self,
        functions: &PatternFunctions,
        member: &str,
        domain: Option<&str>,
        mut stop: impl FnMut(&str) -> bool,
    ) -> Vec<(String, usize)> {
        let mut reached: Vec<(String, usize)> = vec![(member.to_owned(), usize::MAX)];
        if stop(member) {
            return reached;
        }
        let domains = self.domains_of(functions, domain.unwrap_or(DEFAULT_DOMAIN));
        let now = if self.condition.is_some() {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        } else {
            0
        };
        // Name → its index in `reached`.
        let mut seen: HashMap<String, usize> = HashMap::new();
        seen.insert(member.to_owned(), 0);
        let mut next = 0;
        while next < reached.len() && reached.len() < MAX_WALK {
            let name = reached[next].0.clone();
            let from = next;
            next += 1;
            for domain in &domains {
                let Some(members) = self.graph.get(*domain) else {
                    continue;
                };
                // The name itself, and each pattern it matches.
                let mut sources = vec![(name.as_str(), from)];
                let heads = self.pattern_members.get(*domain);
                for pattern in heads.into_iter().flat_map(|h| h.candidates(&name)) {
                    if *pattern == name || !self.matches(functions, self.names, &name, pattern) {
                        continue;
                    }
                    let at = match seen.get(pattern) {
                        Some(&at) => at,
                        None => {
                            reached.push((pattern.clone(), from));
                            seen.insert(pattern.clone(), reached.len() - 1);
                            if stop(pattern) {
                                return reached;
                            }
                            reached.len() - 1
                        }
                    };
                    sources.push((pattern.as_str(), at));
                }
                for (source, at) in sources {
                    for parent in members.get(source).into_iter().flatten() {
                        if seen.contains_key(parent)
                            || !self.grant_holds(domain, source, parent, now)
                        {
                            continue;
                        }
                        reached.push((parent.clone(), at));
                        seen.insert(parent.clone(), reached.len() - 1);
                        if stop(parent) {
                            return reached;
                        }
                    }
                }
            }
        }
        reached
    }

    /// Whether `member` holds `role` (in `domain`): the chain of names by
    /// which it does, patterns it matched included, for the explanation.
    pub(crate) fn walk(
        &self,
        functions: &PatternFunctions,
        member: &str,
        role: &str,
        domain: Option<&str>,
    ) -> Option<Vec<String>> {
        let mut found = false;
        let reached = self.explore(functions, member, domain, |name| {
            found = self.satisfies(functions, name, role);
            found
        });
        found.then(|| path_to_end(&reached))
    }

    /// Every name `member` holds in `domain` (itself first): what a rule
    /// index is looked up with. Patterns it matched are included, since a
    /// rule may name the pattern itself.
    pub(crate) fn reachable(
        &self,
        functions: &PatternFunctions,
        member: &str,
        domain: Option<&str>,
    ) -> Vec<String> {
        self.explore(functions, member, domain, |_| false)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether a name reached satisfies a role check for `role`: it is the
    /// role, or matches it as a pattern.
    pub(crate) fn satisfies(&self, functions: &PatternFunctions, name: &str, role: &str) -> bool {
        name == role || self.matches(functions, self.names, name, role)
    }

    /// Whether a rule's value could be satisfied by a name other than
    /// itself (so an exact lookup would miss it).
    pub(crate) fn may_be_pattern(&self, value: &str) -> bool {
        self.names.is_some_and(|names| names.may_be_pattern(value))
    }
}

/// Patterns grouped by their literal head (the text before the first
/// wildcard), by head length.
#[derive(Debug, Default)]
struct PatternHeads {
    by_length: Vec<(usize, HashMap<String, Vec<String>>)>,
}

impl PatternHeads {
    fn insert(&mut self, func: Func, pattern: &str) {
        let wildcards: &[char] = match func {
            Func::KeyMatch => &['*'],
            Func::KeyMatch2 => &[':', '*'],
            Func::KeyMatch3 | Func::KeyMatch4 | Func::KeyMatch5 => &['{', '*'],
            Func::GlobMatch => &['*', '?', '[', '\\'],
            // Unanchored or not textual: every name is a candidate.
            Func::RegexMatch | Func::IpMatch => &[],
        };
        let head_len = if wildcards.is_empty() {
            0
        } else {
            pattern.find(wildcards).unwrap_or(pattern.len())
        };
        let slot = match self.by_length.iter().position(|(len, _)| *len == head_len) {
            Some(slot) => slot,
            None => {
                self.by_length.push((head_len, HashMap::new()));
                self.by_length.len() - 1
            }
        };
        self.by_length[slot]
            .1
            .entry(pattern[..head_len].to_owned())
            .or_default()
            .push(pattern.to_owned());
    }

    /// The patterns `name` may match: those whose head it starts with.
    fn candidates<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.by_length.iter().flat_map(move |(len, heads)| {
            name.get(..*len)
                .and_then(|head| heads.get(head))
                .into_iter()
                .flatten()
        })
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

#[cfg(test)]
mod tests {
    use super::{seconds_since_epoch, LinkCondition};

    #[test]
    fn time_windows_read_as_go_reads_them() {
        assert_eq!(seconds_since_epoch("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            seconds_since_epoch("2000-03-01 00:00:01"),
            Some(951_868_801)
        );
        assert!(seconds_since_epoch("0000-01-01 00:00:00").unwrap() < 0);
        assert_eq!(seconds_since_epoch("2024-13-01 00:00:00"), None);
        let now = seconds_since_epoch("2026-11-29 12:00:00").unwrap();
        let holds = |start: &str, end: &str| {
            LinkCondition::TimeMatch.holds(&[start.to_owned(), end.to_owned()], now)
        };
        assert!(holds("_", "_"));
        assert!(holds("0000-01-01 00:00:00", "9999-12-30 00:00:00"));
        assert!(!holds("0000-01-01 00:00:00", "0000-01-02 00:00:00"));
        assert!(!holds("9999-12-30 00:00:00", "_"));
        assert!(!holds("not a time", "_"));
    }
}
