//! A lower platform's catalog as a tree: its groups — business groups (215, 业务分组) and virtual
//! organisations (216, 虚拟组织) — give the channels in them their area.
//!
//! A channel's area, first that applies:
//! 1. the nearest group above it that `[gb28181.areas]` maps by its id, followed by the names of
//!    the organisations between that group and the channel (`"示范县/城关镇"` for the township's
//!    group, so a channel in its `东街社区` organisation is `示范县/城关镇/东街社区`);
//! 2. the entry of the longest prefix of its civil code in `[gb28181.areas]`;
//! 3. the names of the organisations above it, outermost first (a business group's name only when
//!    it is in no organisation).
//!
//! Paths keep their first three levels (county/township/village).

use std::collections::{HashMap, HashSet};

use super::config::GbConfig;
use super::manscdp::CatalogItem;
use crate::config::AreaPath;

/// Most levels followed up from a channel (a catalog whose parents loop stops there).
const MAX_DEPTH: usize = 16;

/// Levels an area path has at most.
const MAX_LEVELS: usize = 3;

/// A catalog's entries by id.
pub struct Tree<'a> {
    by_id: HashMap<&'a str, &'a CatalogItem>,
}

fn is_group(item: &CatalogItem) -> bool {
    matches!(item.type_code(), Some(215 | 216))
}

/// A group's name as an area level (no `/` in it, which separates levels).
fn level(item: &CatalogItem) -> Option<String> {
    let name = item.name.trim().replace('/', "／");
    (!name.is_empty() && name != item.id).then_some(name)
}

impl<'a> Tree<'a> {
    /// The tree of a whole catalog.
    pub fn new(items: &'a [CatalogItem]) -> Self {
        Self {
            by_id: items.iter().map(|i| (i.id.as_str(), i)).collect(),
        }
    }

    /// The groups `item` is in, nearest first: the groups on its chain of parents (through
    /// recorders and devices too), then the business group the chain names by `BusinessGroupID`
    /// when no parent is that group.
    pub fn groups_of(&self, item: &CatalogItem) -> Vec<&'a CatalogItem> {
        let mut groups: Vec<&'a CatalogItem> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut business = item.business_group.clone();
        let mut next = item.parent().map(str::to_owned);
        for _ in 0..MAX_DEPTH {
            let Some(id) = next.take() else { break };
            let Some(&parent) = self.by_id.get(id.as_str()) else {
                break;
            };
            if !seen.insert(parent.id.as_str()) {
                break;
            }
            if is_group(parent) {
                groups.push(parent);
            }
            if business.is_none() {
                business.clone_from(&parent.business_group);
            }
            next = parent.parent().map(str::to_owned);
        }
        if let Some(&group) = business.as_deref().and_then(|b| self.by_id.get(b))
            && is_group(group)
            && !seen.contains(group.id.as_str())
        {
            groups.push(group);
        }
        groups
    }

    /// The area of `item` (see the module's rules).
    pub fn area_of(&self, config: &GbConfig, item: &CatalogItem) -> Option<AreaPath> {
        let groups = self.groups_of(item);
        let organisations = |inner: &[&CatalogItem]| -> Vec<String> {
            inner
                .iter()
                .rev()
                .filter(|g| g.type_code() == Some(216))
                .filter_map(|g| level(g))
                .collect()
        };
        for (at, group) in groups.iter().enumerate() {
            if let Some(base) = config.groups.get(&group.id) {
                let mut levels = base.segments().to_vec();
                levels.extend(organisations(&groups[..at]));
                levels.truncate(MAX_LEVELS);
                return AreaPath::new(levels);
            }
        }
        if let Some(area) = item
            .civil_code
            .as_deref()
            .and_then(|code| config.area_of(code))
        {
            return Some(area.clone());
        }
        let mut levels = organisations(&groups);
        if levels.is_empty() {
            levels = groups.iter().rev().filter_map(|g| level(g)).collect();
        }
        levels.truncate(MAX_LEVELS);
        AreaPath::new(levels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSINESS: &str = "34020000002150000001";
    const TOWNSHIP: &str = "34020000002160000001";
    const VILLAGE: &str = "34020000002160000002";
    const NVR: &str = "34020000001180000001";

    fn item(id: &str, name: &str, parent: Option<&str>) -> CatalogItem {
        CatalogItem {
            id: id.into(),
            name: name.into(),
            parent_id: parent.map(str::to_owned),
            ..CatalogItem::default()
        }
    }

    /// A platform's tree: business group → 城关镇 → 东街社区 → an NVR → its channel, and a channel
    /// right in 城关镇.
    fn catalog() -> Vec<CatalogItem> {
        vec![
            item(BUSINESS, "雪亮工程", Some("34020000002000000009")),
            CatalogItem {
                business_group: Some(BUSINESS.into()),
                ..item(TOWNSHIP, "城关镇", Some("34020000002000000009"))
            },
            item(VILLAGE, "东街/社区", Some(TOWNSHIP)),
            item(NVR, "东街 NVR", Some(VILLAGE)),
            CatalogItem {
                civil_code: Some("620921100".into()),
                ..item("34020000001310000001", "东街路口", Some(NVR))
            },
            item(
                "34020000001310000002",
                "镇政府",
                Some(&format!("34020000002000000009/{TOWNSHIP}")),
            ),
        ]
    }

    fn config(areas: &str) -> GbConfig {
        let raw: super::super::RawGbConfig = toml::from_str(&format!(
            "sip_id = \"34020000002000000001\"\npassword_env = \"P\"\n[areas]\n{areas}"
        ))
        .unwrap();
        raw.validate(&|_: &str| Some("p".to_owned())).unwrap()
    }

    fn area(config: &GbConfig, channel: &str) -> Option<String> {
        let items = catalog();
        let tree = Tree::new(&items);
        let item = items.iter().find(|i| i.id == channel).unwrap();
        tree.area_of(config, item).map(|a| a.to_string())
    }

    #[test]
    fn a_channel_is_in_the_groups_above_it_through_recorders_and_business_groups() {
        let items = catalog();
        let tree = Tree::new(&items);
        let ids: Vec<&str> = tree
            .groups_of(&items[4])
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        assert_eq!(ids, [VILLAGE, TOWNSHIP, BUSINESS]);
        // A path in ParentID: its last segment is the parent.
        let ids: Vec<&str> = tree
            .groups_of(&items[5])
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        assert_eq!(ids, [TOWNSHIP, BUSINESS]);
    }

    #[test]
    fn a_mapped_group_wins_then_the_civil_code_then_the_groups_names() {
        let mapped = config(&format!(
            "\"{TOWNSHIP}\" = \"示范县/城关镇\"\n\"620921\" = \"金塔县\"\n"
        ));
        assert_eq!(
            area(&mapped, "34020000001310000001").as_deref(),
            Some("示范县/城关镇/东街／社区"),
            "the mapped township, then the village organisation's name"
        );
        assert_eq!(
            area(&mapped, "34020000001310000002").as_deref(),
            Some("示范县/城关镇")
        );
        let civil = config("\"620921\" = \"金塔县\"\n");
        assert_eq!(
            area(&civil, "34020000001310000001").as_deref(),
            Some("金塔县"),
            "the civil code's entry before unmapped names"
        );
        let plain = config("");
        assert_eq!(
            area(&plain, "34020000001310000001").as_deref(),
            Some("城关镇/东街／社区"),
            "organisations only, outermost first"
        );
    }

    #[test]
    fn a_business_group_alone_names_the_area_and_loops_end() {
        let items = vec![
            item(BUSINESS, "治安监控", None),
            item("34020000001310000003", "路口", Some(BUSINESS)),
            item(TOWNSHIP, "甲", Some(VILLAGE)),
            item(VILLAGE, "乙", Some(TOWNSHIP)),
            item("34020000001310000004", "环", Some(VILLAGE)),
            item("34020000001310000005", "无组", Some("34020000002000000009")),
        ];
        let tree = Tree::new(&items);
        let plain = config("");
        let area = |n: usize| tree.area_of(&plain, &items[n]).map(|a| a.to_string());
        assert_eq!(area(1).as_deref(), Some("治安监控"));
        assert_eq!(area(4).as_deref(), Some("甲/乙"), "a loop is followed once");
        assert_eq!(area(5), None);
    }
}
