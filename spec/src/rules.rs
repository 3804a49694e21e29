//! The rule catalogue (`vectors/rules.json`): every rule of the protocol a vector must pin,
//! and the rule → vectors table kept in `spec/README.md`.

use crate::vector::Vector;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One rule of `pusher-protocol.md`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id, `<section>.<name>`, e.g. `3.unknown-app-4001`.
    pub id: String,
    /// Where the protocol states it, e.g. `§3 bullet 1`.
    pub section: String,
    /// The rule in one sentence.
    pub text: String,
    /// Who requires it: the Pusher documentation, a real client, or Ferrocast alone.
    pub source: Source,
    /// The documentation page, the client file/behaviour, or why Pusher is silent.
    pub reference: String,
}

/// Where a rule comes from, so another server's authors can tell which failures break clients.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Stated by the Pusher Channels documentation (`reference` is the page URL).
    PusherDocs,
    /// Not written down, but pusher-js or an official SDK relies on it.
    ClientBehaviour,
    /// Ferrocast's own choice where Pusher is silent.
    Ferrocast,
}

impl Source {
    /// Every class, in report order.
    pub const ALL: [Source; 3] = [
        Source::PusherDocs,
        Source::ClientBehaviour,
        Source::Ferrocast,
    ];

    /// The name used in `rules.json` and in score lines.
    pub fn name(self) -> &'static str {
        match self {
            Source::PusherDocs => "pusher-docs",
            Source::ClientBehaviour => "client-behaviour",
            Source::Ferrocast => "ferrocast",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    rules: Vec<Rule>,
}

/// Loads the catalogue.
pub fn load(path: &Path) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a catalogue; every rule must name its source and a reference (a `pusher-docs` rule
/// a page of the Pusher Channels documentation).
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let catalogue: Catalogue = serde_json::from_str(text).map_err(|e| e.to_string())?;
    for rule in &catalogue.rules {
        if rule.reference.trim().is_empty() {
            return Err(format!("rule {} has an empty reference", rule.id));
        }
        if rule.source == Source::PusherDocs
            && !rule.reference.starts_with("https://pusher.com/docs/")
        {
            return Err(format!(
                "rule {} is pusher-docs but its reference is not a pusher.com/docs page",
                rule.id
            ));
        }
    }
    Ok(catalogue.rules)
}

/// The class a vector counts under: the least authoritative source among its rules, since a
/// vector that checks one of Ferrocast's choices says nothing certain about real clients.
pub fn class_of(vector: &Vector, rules: &[Rule]) -> Source {
    vector
        .rules
        .iter()
        .filter_map(|id| rules.iter().find(|r| &r.id == id))
        .map(|r| r.source)
        .max()
        .unwrap_or(Source::Ferrocast)
}

/// Passed, run (passed + failed) and not run (after a crash) vectors per class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassScore {
    counts: BTreeMap<Source, (usize, usize, usize)>,
}

impl ClassScore {
    /// Counts one vector's outcome under its class (skips and known failures do not count;
    /// a crash counts as a failed run).
    pub fn add(&mut self, class: Source, outcome: &crate::Outcome) {
        use crate::Outcome;
        let entry = self.counts.entry(class).or_default();
        match outcome {
            Outcome::Pass | Outcome::UnexpectedPass(_) => {
                entry.0 += 1;
                entry.1 += 1;
            }
            Outcome::Fail(_) | Outcome::ServerCrashed(_) => entry.1 += 1,
            Outcome::NotRun => entry.2 += 1,
            Outcome::Skip(_) | Outcome::KnownFailure { .. } => {}
        }
    }

    /// `score: pusher-docs 240/245, client-behaviour 20/20, ferrocast 12/30`; after a crash
    /// each class also says how many of its vectors were not run:
    /// `score: pusher-docs 10/11 (229 not run), …`.
    pub fn line(&self) -> String {
        let any_not_run = self.counts.values().any(|c| c.2 > 0);
        let parts: Vec<String> = Source::ALL
            .iter()
            .map(|s| {
                let (pass, run, not_run) = self.counts.get(s).copied().unwrap_or_default();
                if any_not_run {
                    format!("{} {pass}/{run} ({not_run} not run)", s.name())
                } else {
                    format!("{} {pass}/{run}", s.name())
                }
            })
            .collect();
        format!("score: {}", parts.join(", "))
    }
}

/// Problems with the mapping: vectors naming unknown rules, rules no vector pins, duplicates.
pub fn coverage_problems(rules: &[Rule], vectors: &[Vector]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeMap::new();
    for rule in rules {
        if seen.insert(rule.id.as_str(), ()).is_some() {
            problems.push(format!("rule {} is listed twice", rule.id));
        }
    }
    let map = vectors_by_rule(vectors);
    for vector in vectors {
        if vector.rules.is_empty() {
            problems.push(format!("vector {} names no rule", vector.id));
        }
        for rule in &vector.rules {
            if !seen.contains_key(rule.as_str()) {
                problems.push(format!("vector {} names unknown rule {rule}", vector.id));
            }
        }
    }
    for rule in rules {
        if !map.contains_key(rule.id.as_str()) {
            problems.push(format!("rule {} has no vector", rule.id));
        }
    }
    problems
}

fn vectors_by_rule(vectors: &[Vector]) -> BTreeMap<&str, Vec<&str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for vector in vectors {
        for rule in &vector.rules {
            map.entry(rule.as_str())
                .or_default()
                .push(vector.id.as_str());
        }
    }
    map
}

/// The Markdown table mapping each rule to its vectors, in catalogue order.
pub fn table(rules: &[Rule], vectors: &[Vector]) -> String {
    let map = vectors_by_rule(vectors);
    let mut out =
        String::from("| rule | where | what | source | vectors |\n|---|---|---|---|---|\n");
    for rule in rules {
        let ids = map
            .get(rule.id.as_str())
            .map(|ids| {
                ids.iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            rule.id,
            rule.section,
            rule.text.replace('|', "\\|"),
            source_cell(rule),
            ids
        ));
    }
    out
}

/// Marker lines around the generated table in the README.
pub const TABLE_BEGIN: &str = "<!-- rule-table:begin (generated by `SPEC_BLESS=1 cargo test -p ferrocast-spec --test rules`) -->";
/// End marker of the generated table.
pub const TABLE_END: &str = "<!-- rule-table:end -->";

/// `readme` with the text between the markers replaced by `table`; `None` without markers.
pub fn with_table(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = readme[start..].find(TABLE_END)? + start;
    Some(format!("{}\n{}{}", &readme[..start], table, &readme[end..]))
}

fn source_cell(rule: &Rule) -> String {
    let reference = rule.reference.replace('|', "\\|");
    if reference.starts_with("https://") {
        format!("{} ([page]({reference}))", rule.source.name())
    } else {
        format!("{}: {reference}", rule.source.name())
    }
}
