//! The device registry: which GB/T 28181 devices are registered, from where, whether they keep
//! alive, and what their catalogs hold. Pure state driven by the SIP service with the time it reads
//! from the [`Clock`](crate::clock::Clock); no sockets here, so every rule is tested directly.
//!
//! A device is `online` from a successful REGISTER until it unregisters (`Expires: 0` → offline,
//! `unregistered`), its registration runs out (`unregistered`), or `keepalive_misses` intervals pass
//! without a keepalive (`keepalive_timeout`). A keepalive from an offline device whose registration
//! still holds brings it back online.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::manscdp::{CatalogItem, CatalogPage, DeviceInfo};
use crate::health::OfflineReason;

/// SIP transport a device uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// A device's signalling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Registered and keeping alive.
    Online,
    /// Not (or no longer) reachable by signalling.
    Offline(OfflineReason),
}

/// A change of a device's state, for the log and the stage's consumers.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The device came online.
    Online {
        /// Device id.
        device: String,
    },
    /// The device went offline.
    Offline {
        /// Device id.
        device: String,
        /// Why.
        reason: OfflineReason,
    },
    /// A whole catalog arrived.
    Catalog {
        /// Device id.
        device: String,
        /// Entries in it.
        entries: usize,
    },
}

/// What a catalog page did.
#[derive(Debug, Clone, PartialEq)]
pub enum PageOutcome {
    /// Kept; more pages are expected.
    Partial {
        /// Entries so far.
        have: usize,
        /// Entries announced.
        sum: usize,
    },
    /// The catalog is complete.
    Complete(Change),
    /// The device is not registered.
    UnknownDevice,
    /// The catalog announces more entries than the platform keeps (`SumNum` over the limit).
    TooLarge {
        /// Entries announced.
        sum: usize,
    },
}

/// A catalog still arriving: pages of one query (its SN), dropped when incomplete after
/// [`CATALOG_TIMEOUT`] (a page lost over UDP).
#[derive(Debug, Clone)]
struct PendingCatalog {
    sn: u32,
    sum: usize,
    /// Entries received: a repeat within one page counts (a recorder may list one id twice), an id
    /// an earlier page had does not (a page sent again).
    received: usize,
    items: BTreeMap<String, CatalogItem>,
    last_page: Instant,
}

/// How long a catalog may go without a page before it is dropped.
pub const CATALOG_TIMEOUT: Duration = Duration::from_secs(60);
/// Catalogs of one device assembled at once (a second query while the first is answered).
const PENDING_PER_DEVICE: usize = 3;

/// One device.
#[derive(Debug, Clone)]
pub struct Device {
    /// 20-digit id.
    pub id: String,
    /// Name (configuration's, then the device's own).
    pub name: Option<String>,
    /// SIP transport.
    pub transport: Transport,
    /// Where its requests come from (the source address, not its `Contact`).
    pub addr: SocketAddr,
    /// Signalling state.
    pub state: DeviceState,
    /// When the state last changed (wall clock).
    pub since: SystemTime,
    /// Last REGISTER accepted (wall clock).
    pub registered_at: Option<SystemTime>,
    /// Last keepalive (wall clock).
    pub keepalive_at: Option<SystemTime>,
    /// DeviceInfo answer.
    pub info: Option<DeviceInfo>,
    /// The last complete catalog.
    pub catalog: Vec<CatalogItem>,
    /// When it arrived (wall clock).
    pub catalog_at: Option<SystemTime>,
    /// Its last alarm and when it came (wall clock).
    pub last_alarm: Option<(SystemTime, super::manscdp::Alarm)>,
    /// Alarms since start.
    pub alarms: u64,
    registered_until: Instant,
    last_seen: Instant,
    pending: Vec<PendingCatalog>,
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    devices: BTreeMap<String, Device>,
    keepalive_timeout: Duration,
    max_catalog: usize,
}

impl Registry {
    /// An empty registry; devices go offline after `keepalive_timeout` without a keepalive; a
    /// catalog may announce at most `max_catalog` entries.
    pub fn new(keepalive_timeout: Duration, max_catalog: usize) -> Self {
        Self {
            devices: BTreeMap::new(),
            keepalive_timeout,
            max_catalog,
        }
    }

    /// Forgets devices offline since before `before` (so `max_devices` counts devices in use).
    pub fn forget_offline(&mut self, before: SystemTime) {
        self.devices
            .retain(|_, d| d.state == DeviceState::Online || d.since >= before);
    }

    /// Devices known, in id order.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// One device.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    /// Devices online now.
    pub fn online(&self) -> usize {
        self.devices
            .values()
            .filter(|d| d.state == DeviceState::Online)
            .count()
    }

    /// Devices known (registered at least once since start).
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device has registered.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// A REGISTER was accepted for `expires`. Returns the change when the device came online.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        id: &str,
        name: Option<&str>,
        addr: SocketAddr,
        transport: Transport,
        expires: Duration,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Change> {
        let d = self.devices.entry(id.to_owned()).or_insert_with(|| Device {
            id: id.to_owned(),
            name: name.map(str::to_owned),
            transport,
            addr,
            state: DeviceState::Offline(OfflineReason::Unregistered),
            since: wall,
            registered_at: None,
            keepalive_at: None,
            info: None,
            catalog: Vec::new(),
            catalog_at: None,
            last_alarm: None,
            alarms: 0,
            registered_until: now,
            last_seen: now,
            pending: Vec::new(),
        });
        d.addr = addr;
        d.transport = transport;
        d.registered_at = Some(wall);
        d.registered_until = now + expires;
        d.last_seen = now;
        set_state(d, DeviceState::Online, wall)
    }

    /// `Expires: 0`: the device leaves. Returns the change when it was online.
    pub fn unregister(&mut self, id: &str, wall: SystemTime) -> Option<Change> {
        let d = self.devices.get_mut(id)?;
        d.pending.clear();
        set_state(d, DeviceState::Offline(OfflineReason::Unregistered), wall)
    }

    /// A keepalive from `addr`: the change, when it came back online; `Err` with why it is refused
    /// (not registered; sent from another host than the one that registered).
    pub fn keepalive(
        &mut self,
        id: &str,
        addr: SocketAddr,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Option<Change>, &'static str> {
        let d = self.devices.get_mut(id).ok_or(NOT_REGISTERED)?;
        if d.state == DeviceState::Offline(OfflineReason::Unregistered) || now >= d.registered_until
        {
            return Err(NOT_REGISTERED);
        }
        if addr.ip() != d.addr.ip() {
            return Err("sent from another host than the one it registered from: REGISTER again");
        }
        // The port may change (NAT rebinding); the host may not.
        d.addr = addr;
        d.last_seen = now;
        d.keepalive_at = Some(wall);
        Ok(set_state(d, DeviceState::Online, wall))
    }

    /// Whether `id` is registered now (its requests are accepted).
    pub fn is_registered(&self, id: &str, now: Instant) -> bool {
        self.devices.get(id).is_some_and(|d| {
            d.state != DeviceState::Offline(OfflineReason::Unregistered) && now < d.registered_until
        })
    }

    /// An alarm from `device`; returns whether what alarmed is the device or in its catalog.
    pub fn note_alarm(
        &mut self,
        device: &str,
        alarm: &super::manscdp::Alarm,
        wall: SystemTime,
    ) -> bool {
        let Some(d) = self.devices.get_mut(device) else {
            return false;
        };
        d.alarms += 1;
        d.last_alarm = Some((wall, alarm.clone()));
        alarm.device_id == d.id || d.catalog.iter().any(|c| c.id == alarm.device_id)
    }

    /// A DeviceInfo answer.
    pub fn device_info(&mut self, info: DeviceInfo) -> bool {
        match self.devices.get_mut(&info.device_id) {
            Some(d) => {
                if let Some(n) = &info.name {
                    d.name = Some(n.clone());
                }
                d.info = Some(info);
                true
            }
            None => false,
        }
    }

    /// A catalog page. Pages of one query (SN) accumulate until `SumNum` entries have arrived (an id
    /// repeated within a page counts, as recorders list unconfigured channels twice; a page sent
    /// again does not). Up to three queries' catalogs assemble side by side; one without a page for
    /// [`CATALOG_TIMEOUT`] is dropped by [`Registry::tick`].
    pub fn catalog_page(
        &mut self,
        page: CatalogPage,
        now: Instant,
        wall: SystemTime,
    ) -> PageOutcome {
        let Some(d) = self.devices.get_mut(&page.device_id) else {
            return PageOutcome::UnknownDevice;
        };
        let sum = page.sum_num as usize;
        if sum > self.max_catalog {
            d.pending.retain(|p| p.sn != page.sn);
            return PageOutcome::TooLarge { sum };
        }
        let at = match d
            .pending
            .iter()
            .position(|p| p.sn == page.sn && p.sum == sum)
        {
            Some(at) => at,
            None => {
                d.pending.retain(|p| p.sn != page.sn);
                if d.pending.len() >= PENDING_PER_DEVICE {
                    d.pending.remove(0);
                }
                d.pending.push(PendingCatalog {
                    sn: page.sn,
                    sum,
                    received: 0,
                    items: BTreeMap::new(),
                    last_page: now,
                });
                d.pending.len() - 1
            }
        };
        let pending = &mut d.pending[at];
        pending.last_page = now;
        let before: std::collections::HashSet<String> = page
            .items
            .iter()
            .filter(|i| pending.items.contains_key(&i.id))
            .map(|i| i.id.clone())
            .collect();
        for item in page.items {
            if before.contains(&item.id) {
                continue;
            }
            pending.received += 1;
            if pending.items.len() < sum || pending.items.contains_key(&item.id) {
                pending.items.insert(item.id.clone(), item);
            }
        }
        let have = pending.received;
        if have < sum {
            return PageOutcome::Partial { have, sum };
        }
        let done = d.pending.remove(at);
        d.catalog = done.items.into_values().collect();
        d.catalog_at = Some(wall);
        PageOutcome::Complete(Change::Catalog {
            device: d.id.clone(),
            entries: d.catalog.len(),
        })
    }

    /// A catalog notification (`Notify/Catalog`): each entry's `event` applied to the device's
    /// last complete catalog — `ON` / `OFF` (also `VLOST`, `DEFECT`) set its status, `DEL` removes
    /// it, `ADD` / `UPDATE` put a new entry in (as `ON` unless it says) or change the fields an
    /// existing one's notification carries (the others, and its status when none is said, stay).
    /// `None` when the device has no catalog yet (the full one, asked for after registering, is on
    /// its way) or nothing changed. `catalog_at` stays the last full catalog's time (the next
    /// re-read, which renews the subscription, is counted from it).
    pub fn catalog_change(&mut self, page: CatalogPage) -> Option<Change> {
        let d = self.devices.get_mut(&page.device_id)?;
        d.catalog_at?;
        let mut changed = false;
        for mut item in page.items {
            let at = d.catalog.iter().position(|i| i.id == item.id);
            let event = item.event.take().unwrap_or_default();
            match (event.as_str(), at) {
                ("ON", Some(at)) => d.catalog[at].online = Some(true),
                ("OFF" | "VLOST" | "DEFECT", Some(at)) => d.catalog[at].online = Some(false),
                ("DEL", Some(at)) => {
                    d.catalog.remove(at);
                }
                ("ADD" | "UPDATE", Some(at)) => merge(&mut d.catalog[at], item),
                ("ADD" | "UPDATE", None) if d.catalog.len() < self.max_catalog => {
                    item.online = item.online.or(Some(true));
                    d.catalog.push(item);
                }
                _ => continue,
            }
            changed = true;
        }
        if !changed {
            return None;
        }
        Some(Change::Catalog {
            device: d.id.clone(),
            entries: d.catalog.len(),
        })
    }

    /// Whether a catalog of `id` is arriving (a page within [`CATALOG_TIMEOUT`]).
    pub fn catalog_arriving(&self, id: &str, now: Instant) -> bool {
        self.devices.get(id).is_some_and(|d| {
            d.pending
                .iter()
                .any(|p| now.duration_since(p.last_page) < CATALOG_TIMEOUT)
        })
    }

    /// Ends registrations that ran out and marks devices that stopped keeping alive.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) -> Vec<Change> {
        let timeout = self.keepalive_timeout;
        let mut out = Vec::new();
        for d in self.devices.values_mut() {
            d.pending
                .retain(|p| now.duration_since(p.last_page) < CATALOG_TIMEOUT);
            if d.state != DeviceState::Online {
                continue;
            }
            let reason = if now >= d.registered_until {
                OfflineReason::Unregistered
            } else if now.duration_since(d.last_seen) >= timeout {
                OfflineReason::KeepaliveTimeout
            } else {
                continue;
            };
            out.extend(set_state(d, DeviceState::Offline(reason), wall));
        }
        out
    }
}

const NOT_REGISTERED: &str = "is not registered: REGISTER first";

/// The fields a notification carries, over an entry's (a name that is only the id is none).
fn merge(entry: &mut CatalogItem, from: CatalogItem) {
    if from.name != from.id {
        entry.name = from.name;
    }
    let keep = |old: &mut Option<String>, new: Option<String>| {
        if new.is_some() {
            *old = new;
        }
    };
    keep(&mut entry.manufacturer, from.manufacturer);
    keep(&mut entry.model, from.model);
    keep(&mut entry.civil_code, from.civil_code);
    keep(&mut entry.parent_id, from.parent_id);
    keep(&mut entry.business_group, from.business_group);
    entry.online = from.online.or(entry.online);
    if from.longitude.is_some() && from.latitude.is_some() {
        entry.longitude = from.longitude;
        entry.latitude = from.latitude;
    }
}

fn set_state(d: &mut Device, state: DeviceState, wall: SystemTime) -> Option<Change> {
    if d.state == state {
        return None;
    }
    d.state = state;
    d.since = wall;
    Some(match state {
        DeviceState::Online => Change::Online {
            device: d.id.clone(),
        },
        DeviceState::Offline(reason) => Change::Offline {
            device: d.id.clone(),
            reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "34020000001320000001";

    fn addr() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    fn reg(r: &mut Registry, now: Instant, expires: u64) -> Option<Change> {
        r.register(
            DEV,
            None,
            addr(),
            Transport::Udp,
            Duration::from_secs(expires),
            now,
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_silent_device_goes_offline_after_the_timeout_and_a_keepalive_brings_it_back() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut r = Registry::new(Duration::from_secs(3), 1000);
        assert_eq!(
            reg(&mut r, t0, 3600),
            Some(Change::Online { device: DEV.into() })
        );
        assert_eq!(reg(&mut r, t0, 3600), None, "a refresh changes nothing");
        assert!(r.tick(t0 + Duration::from_millis(2900), w).is_empty());
        assert_eq!(
            r.tick(t0 + Duration::from_secs(3), w),
            vec![Change::Offline {
                device: DEV.into(),
                reason: OfflineReason::KeepaliveTimeout
            }]
        );
        assert!(r.tick(t0 + Duration::from_secs(4), w).is_empty(), "once");
        let back = r.keepalive(DEV, addr(), t0 + Duration::from_secs(5), w);
        assert_eq!(back, Ok(Some(Change::Online { device: DEV.into() })));
        assert_eq!(r.online(), 1);
    }

    #[test]
    fn unregistering_or_expiring_is_unregistered_and_keepalives_are_then_refused() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut r = Registry::new(Duration::from_secs(180), 1000);
        assert_eq!(
            r.keepalive(DEV, addr(), t0, w),
            Err(NOT_REGISTERED),
            "never registered"
        );
        reg(&mut r, t0, 10);
        assert_eq!(
            r.tick(t0 + Duration::from_secs(10), w),
            vec![Change::Offline {
                device: DEV.into(),
                reason: OfflineReason::Unregistered
            }]
        );
        assert_eq!(
            r.keepalive(DEV, addr(), t0 + Duration::from_secs(11), w),
            Err(NOT_REGISTERED)
        );
        reg(&mut r, t0 + Duration::from_secs(12), 60);
        assert!(r.is_registered(DEV, t0 + Duration::from_secs(13)));
        assert_eq!(
            r.unregister(DEV, w),
            Some(Change::Offline {
                device: DEV.into(),
                reason: OfflineReason::Unregistered
            })
        );
        assert!(!r.is_registered(DEV, t0 + Duration::from_secs(13)));
    }

    /// A catalog notification changes the last complete catalog: nothing before there is one;
    /// `OFF`/`ON` set the status, `DEL` removes, `ADD` puts in (as `ON`); an unknown entry's
    /// `OFF` or an unknown event changes nothing.
    #[test]
    fn catalog_notifications_change_the_last_catalog() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut r = Registry::new(Duration::from_secs(180), 1000);
        reg(&mut r, t0, 3600);
        let item = |n: u32, event: Option<&str>| CatalogItem {
            id: format!("340200000013100{n:05}"),
            name: format!("通道{n}"),
            event: event.map(str::to_owned),
            ..CatalogItem::default()
        };
        let change = |items: Vec<CatalogItem>| CatalogPage {
            sn: 9,
            device_id: DEV.into(),
            sum_num: items.len() as u32,
            items,
        };
        assert_eq!(
            r.catalog_change(change(vec![item(1, Some("OFF"))])),
            None,
            "no catalog yet"
        );
        let full = CatalogPage {
            sn: 1,
            device_id: DEV.into(),
            sum_num: 2,
            items: vec![item(1, None), item(2, None)],
        };
        assert!(matches!(
            r.catalog_page(full, t0, w),
            PageOutcome::Complete(_)
        ));
        let changed = r.catalog_change(change(vec![
            item(1, Some("OFF")),
            item(2, Some("DEL")),
            item(3, Some("ADD")),
            item(4, Some("OFF")),
            item(1, Some("WHATEVER")),
        ]));
        assert!(matches!(changed, Some(Change::Catalog { entries: 2, .. })));
        let catalog = &r.device(DEV).unwrap().catalog;
        let status: Vec<(&str, Option<bool>)> =
            catalog.iter().map(|i| (&i.id[15..], i.online)).collect();
        assert_eq!(status, [("00001", Some(false)), ("00003", Some(true))]);
        // An UPDATE carrying only some fields changes those: the name (only the id here), the
        // status it does not say, stay.
        let id3 = catalog[1].id.clone();
        let update = CatalogItem {
            id: id3.clone(),
            name: id3.clone(),
            civil_code: Some("620921".into()),
            event: Some("UPDATE".into()),
            ..CatalogItem::default()
        };
        assert!(r.catalog_change(change(vec![update])).is_some());
        let entry = &r.device(DEV).unwrap().catalog[1];
        assert_eq!(
            (
                entry.name.as_str(),
                entry.online,
                entry.civil_code.as_deref()
            ),
            ("通道3", Some(true), Some("620921"))
        );
        assert_eq!(
            r.device(DEV).unwrap().catalog_at,
            Some(w),
            "still the full catalog's time"
        );
        assert_eq!(r.catalog_change(change(vec![item(9, Some("OFF"))])), None);
    }

    #[test]
    fn catalog_pages_are_assembled_until_sum_num() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut r = Registry::new(Duration::from_secs(180), 1000);
        reg(&mut r, t0, 3600);
        let item = |n: u32| CatalogItem {
            id: format!("340200000013100{n:05}"),
            name: format!("通道{n}"),
            ..CatalogItem::default()
        };
        let page = |sn: u32, sum: u32, items: Vec<CatalogItem>| CatalogPage {
            sn,
            device_id: DEV.into(),
            sum_num: sum,
            items,
        };
        assert_eq!(
            r.catalog_page(page(1, 3, vec![item(1), item(2)]), t0, w),
            PageOutcome::Partial { have: 2, sum: 3 }
        );
        assert_eq!(
            r.catalog_page(page(1, 3, vec![item(3)]), t0, w),
            PageOutcome::Complete(Change::Catalog {
                device: DEV.into(),
                entries: 3
            })
        );
        assert_eq!(r.device(DEV).unwrap().catalog.len(), 3);
        // Two queries answered at once assemble side by side; a page sent again counts once.
        r.catalog_page(page(2, 3, vec![item(1), item(2)]), t0, w);
        assert_eq!(
            r.catalog_page(page(3, 3, vec![item(3)]), t0, w),
            PageOutcome::Partial { have: 1, sum: 3 }
        );
        assert_eq!(
            r.catalog_page(page(2, 3, vec![item(1), item(2)]), t0, w),
            PageOutcome::Partial { have: 2, sum: 3 },
            "a page sent again"
        );
        assert_eq!(
            r.catalog_page(page(2, 3, vec![item(3)]), t0, w),
            PageOutcome::Complete(Change::Catalog {
                device: DEV.into(),
                entries: 3
            })
        );
        assert!(r.catalog_arriving(DEV, t0), "query 3 is still arriving");
        // A recorder listing one id twice: complete by count, the id kept once.
        assert_eq!(
            r.catalog_page(page(4, 3, vec![item(1), item(1), item(2)]), t0, w),
            PageOutcome::Complete(Change::Catalog {
                device: DEV.into(),
                entries: 2
            })
        );
        // An incomplete catalog is dropped a minute after its last page: its next page starts over.
        r.catalog_page(page(5, 3, vec![item(1)]), t0, w);
        r.catalog_page(page(5, 3, vec![item(2)]), t0 + Duration::from_secs(50), w);
        r.tick(t0 + Duration::from_secs(100), w);
        assert_eq!(
            r.catalog_page(page(5, 3, vec![item(3)]), t0 + Duration::from_secs(100), w),
            PageOutcome::Complete(Change::Catalog {
                device: DEV.into(),
                entries: 3
            }),
            "slow pages keep it alive"
        );
        r.catalog_page(page(8, 3, vec![item(1)]), t0, w);
        r.tick(t0 + CATALOG_TIMEOUT, w);
        assert!(!r.catalog_arriving(DEV, t0 + CATALOG_TIMEOUT));
        assert_eq!(
            r.catalog_page(page(8, 3, vec![item(2)]), t0 + CATALOG_TIMEOUT, w),
            PageOutcome::Partial { have: 1, sum: 3 }
        );
        assert_eq!(
            r.catalog_page(page(6, 5000, vec![item(1)]), t0, w),
            PageOutcome::TooLarge { sum: 5000 }
        );
        let unknown = CatalogPage {
            device_id: "34020000001320000999".into(),
            ..page(7, 1, vec![])
        };
        assert_eq!(r.catalog_page(unknown, t0, w), PageOutcome::UnknownDevice);
    }

    #[test]
    fn a_keepalive_from_another_host_is_refused() {
        let t0 = Instant::now();
        let w = SystemTime::UNIX_EPOCH;
        let mut r = Registry::new(Duration::from_secs(180), 1000);
        reg(&mut r, t0, 3600);
        let other: SocketAddr = "10.9.9.9:5070".parse().unwrap();
        assert!(
            r.keepalive(DEV, other, t0, w)
                .unwrap_err()
                .contains("another host")
        );
        let new_port: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(r.keepalive(DEV, new_port, t0, w), Ok(None), "NAT rebinding");
        assert_eq!(r.device(DEV).unwrap().addr, new_port);
    }
}
