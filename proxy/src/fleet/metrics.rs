//! The fleet on `/metrics`: the live releases of every collector, and how
//! many agents report each release in each status.

use std::collections::BTreeMap;

use super::catalog::{Release, ReleaseState};
use super::{Fleet, Releases, lock};
use crate::exposition::{self, Exposition, Kind};

impl Fleet {
    /// Appends the fleet's families to `out`.
    pub fn render(&self, out: &mut Exposition) {
        let mut live = Vec::new();
        let mut rolled_back: BTreeMap<(String, String), u64> = BTreeMap::new();
        // Each project's releases, to tell which one a report is about.
        let mut known: BTreeMap<String, Vec<Release>> = BTreeMap::new();
        for (project, catalog) in lock(&self.catalogs).iter() {
            known.insert(project.clone(), catalog.releases().to_vec());
            for r in catalog.releases() {
                match r.state {
                    ReleaseState::Promoted | ReleaseState::Canary | ReleaseState::Held => {
                        live.push((
                            project.clone(),
                            r.name.clone(),
                            r.id,
                            r.version.clone(),
                            r.state,
                        ));
                    }
                    ReleaseState::RolledBack => {
                        *rolled_back.entry((project.clone(), r.name.clone())).or_default() += 1;
                    }
                    ReleaseState::Superseded | ReleaseState::Removed => {}
                }
            }
        }
        let name = "wasmtap_proxy_fleet_release";
        exposition::family(
            out,
            name,
            "1 for each live release of a published collector: promoted, canary or held.",
            Kind::Gauge,
        );
        for (project, collector, id, version, state) in live {
            let state = match state {
                ReleaseState::Canary => "canary",
                ReleaseState::Held => "held",
                _ => "promoted",
            };
            let labels = [
                ("project".to_owned(), project),
                ("collector".to_owned(), collector),
                ("release".to_owned(), id.to_string()),
                ("version".to_owned(), version),
                ("state".to_owned(), state.to_owned()),
            ];
            exposition::sample(out, name, &labels, 1.0, None);
        }
        let name = "wasmtap_proxy_fleet_rollbacks_total";
        exposition::family(
            out,
            name,
            "Releases of a collector rolled back, by an operator or after a failing canary.",
            Kind::Counter,
        );
        for ((project, collector), n) in rolled_back {
            let labels = [("project".to_owned(), project), ("collector".to_owned(), collector)];
            exposition::sample(out, name, &labels, n as f64, None);
        }
        let known: BTreeMap<&String, Releases<'_>> =
            known.iter().map(|(p, releases)| (p, Releases::new(releases))).collect();
        let mut agents: BTreeMap<(String, String, String, &'static str), u64> = BTreeMap::new();
        for ((project, _), view) in lock(&self.agents).iter() {
            for c in view.state.iter().flat_map(|s| &s.collectors) {
                let release = known
                    .get(project)
                    .and_then(|index| index.of(c))
                    .map_or_else(|| "unknown".to_owned(), |r| r.id.to_string());
                let key = (project.clone(), c.name.clone(), release, c.status.name());
                *agents.entry(key).or_default() += 1;
            }
        }
        let name = "wasmtap_proxy_fleet_agents";
        exposition::family(
            out,
            name,
            "Agents that last reported a release of a published collector, by status.",
            Kind::Gauge,
        );
        for ((project, collector, release, status), n) in agents {
            let labels = [
                ("project".to_owned(), project),
                ("collector".to_owned(), collector),
                ("release".to_owned(), release),
                ("status".to_owned(), status.to_owned()),
            ];
            exposition::sample(out, name, &labels, n as f64, None);
        }
    }
}
