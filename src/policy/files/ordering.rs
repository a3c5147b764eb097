//! Rule order for the priority effects: the explicit priority column and
//! Go Casbin's subject hierarchy.

use super::*;

/// With an explicit `priority` column (`p = priority, sub, obj, act,
/// eft`), Casbin evaluates rules in ascending priority, not file order (Go
/// Casbin sorts them on load; casbin-rs does not): `p` rules are ordered
/// so, stably, ties keeping their file order. A priority that is not an
/// integer is an error at its line.
/// With the subject-priority effect, orders `p` rules as Go Casbin's
/// `SortPoliciesBySubjectHierarchy` does: by the depth of their subject in
/// the `g` tree (per domain when the rules have one), deepest first,
/// stable; the effect then reads as `priority(p.eft) || deny`, which is
/// what both evaluators are given.
pub fn order_by_subject_priority(outline: &ModelOutline, rules: &mut [RuleLine]) {
    if !matches!(
        outline.effect.as_deref(),
        Some(SUBJECT_PRIORITY_EFFECT | SUBJECT_PRIORITY_DENY_OVERRIDE_EFFECT)
    ) {
        return;
    }
    let domain_slot = outline
        .tokens
        .get("p")
        .and_then(|tokens| tokens.iter().position(|t| t == "dom"));
    const DEFAULT: &str = "";
    // (domain, name) → depth below the tree's roots.
    let mut children: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    let mut depth: HashMap<(String, String), usize> = HashMap::new();
    let mut is_child: std::collections::HashSet<(&str, &str)> = Default::default();
    let mut names: Vec<(&str, &str)> = Vec::new();
    for rule in rules.iter().filter(|r| r.ptype == "g") {
        let Some((child, parent)) = rule.values.first().zip(rule.values.get(1)) else {
            continue;
        };
        let domain = rule.values.get(2).map_or(DEFAULT, String::as_str);
        children
            .entry((domain, parent.as_str()))
            .or_default()
            .push(child.as_str());
        is_child.insert((domain, child.as_str()));
        names.push((domain, child.as_str()));
        names.push((domain, parent.as_str()));
    }
    for &(domain, root) in names.iter().filter(|n| !is_child.contains(n)) {
        let mut level = vec![root];
        let mut seen = std::collections::HashSet::new();
        for distance in 0.. {
            if level.is_empty() || distance > names.len() {
                break;
            }
            let mut next = Vec::new();
            for name in level {
                if !seen.insert(name) {
                    continue;
                }
                depth.insert((domain.to_owned(), name.to_owned()), distance);
                next.extend(children.get(&(domain, name)).into_iter().flatten().copied());
            }
            level = next;
        }
    }
    let places: Vec<usize> = (0..rules.len())
        .filter(|&i| rules[i].ptype == "p")
        .collect();
    let mut ordered: Vec<RuleLine> = places.iter().map(|&i| rules[i].clone()).collect();
    ordered.sort_by_key(|rule| {
        let domain = domain_slot
            .and_then(|slot| rule.values.get(slot))
            .map_or(DEFAULT, String::as_str);
        let subject = rule.values.first().map_or("", String::as_str);
        std::cmp::Reverse(
            depth
                .get(&(domain.to_owned(), subject.to_owned()))
                .copied()
                .unwrap_or(0),
        )
    });
    for (place, rule) in places.into_iter().zip(ordered) {
        rules[place] = rule;
    }
}

/// The model text Casbin's parsers are given for Go's priority effects,
/// once the rules are in their order: subject priority decides as
/// priority does, and the explicit-override forms as deny-override.
pub fn subject_priority_as_priority(model_text: &str) -> String {
    let mut text = model_text
        .replace("subjectPriority(p.eft) || deny", "priority(p.eft) || deny")
        .replace("subjectPriority(p_eft) || deny", "priority(p_eft) || deny");
    for effect in [
        PRIORITY_DENY_OVERRIDE_EFFECT,
        SUBJECT_PRIORITY_DENY_OVERRIDE_EFFECT,
    ] {
        text = text
            .replace(effect, DENY_OVERRIDE_EFFECT)
            .replace(&effect.replace("p_eft", "p.eft"), DENY_OVERRIDE_EFFECT);
    }
    text
}

pub fn order_by_priority(
    outline: &ModelOutline,
    rules: &mut [RuleLine],
) -> Result<(), Vec<Problem>> {
    let Some(slot) = outline
        .tokens
        .get("p")
        .and_then(|tokens| tokens.iter().position(|t| t == "priority"))
    else {
        return Ok(());
    };
    let mut problems = Vec::new();
    let mut keyed: Vec<(i64, usize)> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if rule.ptype != "p" {
            continue;
        }
        let text = rule.values[slot].trim();
        match text.parse::<i64>() {
            Ok(priority) => keyed.push((priority, index)),
            Err(_) => problems.push(problem(
                POLICY_FILE,
                rule.origin.line,
                format!("priority `{text}` is not an integer"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Only the `p` rules move, among the places `p` rules hold.
    let places: Vec<usize> = keyed.iter().map(|(_, index)| *index).collect();
    keyed.sort_by_key(|(priority, _)| *priority);
    let ordered: Vec<RuleLine> = keyed
        .iter()
        .map(|(_, index)| rules[*index].clone())
        .collect();
    for (place, rule) in places.into_iter().zip(ordered) {
        rules[place] = rule;
    }
    Ok(())
}
