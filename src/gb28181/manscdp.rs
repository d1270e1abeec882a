//! MANSCDP bodies (GB/T 28181 §A): the XML a device and a platform exchange in SIP MESSAGEs —
//! keepalives, catalog and device-info queries and their answers.
//!
//! Devices declare `encoding="GB2312"` whatever they actually send: a body is read as UTF-8 when it
//! is valid UTF-8 and as GB18030 (a superset of GB2312 and GBK) otherwise. Parsing is lenient —
//! unknown elements are skipped, element names compared without case, numbers that do not parse are
//! left out — but a body that is not XML, or has no `CmdType`, is an error that names what is wrong.

use std::borrow::Cow;
use std::fmt;

use quick_xml::Reader;
use quick_xml::events::Event;

/// Bodies larger than this are refused (a 200-channel catalog page is about 60 KB).
pub const MAX_BODY: usize = 256 * 1024;

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}

/// A body's text: UTF-8 when it is valid UTF-8, else GB18030.
pub fn decode_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => encoding_rs::GB18030.decode_without_bom_handling(bytes).0,
    }
}

/// One XML element: its name, text and children (MANSCDP is a few levels deep).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// Local name as written.
    pub name: String,
    /// Text content, trimmed.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name` (ASCII case ignored).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The text of the first child named `name`, when it is not empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.as_str())
            .filter(|t| !t.is_empty())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text_of(name).and_then(|t| t.trim().parse().ok())
    }
}

/// Parses an XML document into its root element.
pub fn parse_xml(text: &str) -> Result<Element, BodyError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| BodyError(format!("not XML at byte {at}: {e}")))?;
        match event {
            Event::Start(e) => {
                if stack.len() > 16 {
                    return Err(BodyError("XML nested more than 16 levels".into()));
                }
                stack.push(Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                let el = Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t
                        .decode()
                        .map_err(|e| BodyError(format!("text at byte {at}: {e}")))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        _ => match AsRef::<[u8]>::as_ref(&*r) {
                            b"amp" => Some('&'),
                            b"lt" => Some('<'),
                            b"gt" => Some('>'),
                            b"quot" => Some('"'),
                            b"apos" => Some('\''),
                            _ => None,
                        },
                    };
                    if let Some(c) = resolved {
                        top.text.push(c);
                    }
                }
            }
            Event::End(_) => {
                let Some(mut done) = stack.pop() else {
                    return Err(BodyError(format!(
                        "an end tag without its start at byte {at}"
                    )));
                };
                // Trimmed once whole: text split around an entity keeps its inner spaces.
                let trimmed = done.text.trim();
                if trimmed.len() != done.text.len() {
                    done.text = trimmed.to_owned();
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Eof => {
                return Err(BodyError(match stack.first() {
                    Some(root) => format!("XML ends inside <{}>", root.name),
                    None => "empty body: no XML element".into(),
                }));
            }
            _ => {}
        }
    }
}

/// One entry of a catalog answer: a channel (camera) or a group/organisation node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogItem {
    /// The entry's 20-digit code.
    pub id: String,
    /// Name as the device reports it.
    pub name: String,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Administrative-division code (行政区划).
    pub civil_code: Option<String>,
    /// Parent device or group (some platforms write the whole path, `a/b/c`).
    pub parent_id: Option<String>,
    /// The business group (215) a virtual organisation (216) or channel belongs to.
    pub business_group: Option<String>,
    /// `ON`/`OFF` as reported (`None`: not said).
    pub online: Option<bool>,
    /// WGS-84 longitude.
    pub longitude: Option<f64>,
    /// WGS-84 latitude.
    pub latitude: Option<f64>,
    /// In a catalog notification (`Notify/Catalog`, after a SUBSCRIBE): what happened to the
    /// entry, upper case — `ON`, `OFF`, `VLOST`, `DEFECT`, `ADD`, `DEL`, `UPDATE`.
    pub event: Option<String>,
}

impl CatalogItem {
    /// The type digits of a 20-digit code (positions 11–13): 131/132 cameras, 118 NVR channels,
    /// 200 platforms, 215/216 groups.
    pub fn type_code(&self) -> Option<u16> {
        type_code(&self.id)
    }

    /// The entry's parent, nearest first: the last segment of a `ParentID` path (`a/b/c` is `c`).
    pub fn parent(&self) -> Option<&str> {
        self.parent_id
            .as_deref()?
            .rsplit('/')
            .map(str::trim)
            .find(|s| !s.is_empty())
    }
}

/// The type digits (positions 11–13) of a 20-digit GB/T 28181 code.
pub fn type_code(id: &str) -> Option<u16> {
    (id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id[10..13].parse().ok())
        .flatten()
}

/// One page of a catalog answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogPage {
    /// The query's serial number.
    pub sn: u32,
    /// The answering device.
    pub device_id: String,
    /// Entries in the whole catalog (all pages).
    pub sum_num: u32,
    /// This page's entries.
    pub items: Vec<CatalogItem>,
}

/// A DeviceInfo answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    /// The answering device.
    pub device_id: String,
    /// Device name.
    pub name: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Channels the device has.
    pub channels: Option<u32>,
}

/// A device's alarm (`Notify/Alarm`, GB/T 28181-2016 §9.4 / A.2.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alarm {
    /// Serial number (the platform's answer repeats it).
    pub sn: u32,
    /// What alarmed: a channel, an alarm input, or the device itself.
    pub device_id: String,
    /// `AlarmPriority`: 1 (一级警情, most urgent) to 4.
    pub priority: Option<u8>,
    /// `AlarmMethod`: 1 phone, 2 device, 3 SMS, 4 GPS, 5 video, 6 device fault, 7 other.
    pub method: Option<u8>,
    /// `Info/AlarmType`: with method 5, 1 manual, 2 motion, 3 left object, 4 object removed,
    /// 5 tripwire, 6 intrusion, 7 wrong way, 8 loitering, 9 people counting, 10 density, 11 video
    /// anomaly, 12 fast moving; with method 2, 1 video lost, 2 tampering, 3 storage full, 4/5
    /// temperature; with method 6, 1 disk fault, 2 fan fault.
    pub alarm_type: Option<u16>,
    /// `AlarmTime`, as written (local time `2026-12-07T21:45:00`).
    pub time: Option<String>,
    /// `AlarmDescription`.
    pub description: Option<String>,
    /// `Longitude`.
    pub longitude: Option<f64>,
    /// `Latitude`.
    pub latitude: Option<f64>,
    /// `Info/AlarmTypeParam/EventType`: 1 begins, 2 ends (intrusion and tripwire-like alarms).
    pub event_type: Option<u8>,
}

/// What a MESSAGE body says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `Notify/Keepalive`: the device is alive.
    Keepalive {
        /// Serial number.
        sn: u32,
        /// The device.
        device_id: String,
        /// `Status` is `OK` (or absent).
        ok: bool,
    },
    /// `Response/Catalog`: one page of the device's channel list.
    Catalog(CatalogPage),
    /// `Notify/Catalog`: entries that changed (each with its `event`), after a SUBSCRIBE.
    CatalogChange(CatalogPage),
    /// `Response/DeviceInfo`.
    DeviceInfo(DeviceInfo),
    /// `Notify/Alarm`.
    Alarm(Alarm),
    /// A query (`Query/...`) — what a device answers.
    Query {
        /// `CmdType`.
        cmd: String,
        /// Serial number.
        sn: u32,
        /// The device asked.
        device_id: String,
    },
    /// Anything else with a `CmdType` (status, media status, …): answered, not yet acted on.
    Other {
        /// Root element (`Notify`, `Response`, `Control`).
        root: String,
        /// `CmdType`.
        cmd: String,
        /// The device it names.
        device_id: Option<String>,
    },
}

/// Reads a MESSAGE body.
pub fn parse(bytes: &[u8]) -> Result<Body, BodyError> {
    if bytes.len() > MAX_BODY {
        return Err(BodyError(format!(
            "body of {} bytes is over the {MAX_BODY}-byte limit",
            bytes.len()
        )));
    }
    let text = decode_text(bytes);
    let root = parse_xml(&text)?;
    let cmd = root
        .text_of("CmdType")
        .ok_or_else(|| BodyError(format!("<{}> has no CmdType", root.name)))?
        .to_owned();
    let sn = root.number("SN").unwrap_or(0);
    let device_id = root.text_of("DeviceID").map(str::to_owned);
    let need_device = || {
        device_id
            .clone()
            .ok_or_else(|| BodyError(format!("{} {cmd} has no DeviceID", root.name)))
    };
    let kind = (root.name.to_ascii_lowercase(), cmd.to_ascii_lowercase());
    Ok(match (kind.0.as_str(), kind.1.as_str()) {
        ("notify", "keepalive") => Body::Keepalive {
            sn,
            device_id: need_device()?,
            ok: root
                .text_of("Status")
                .is_none_or(|s| s.eq_ignore_ascii_case("OK")),
        },
        ("response", "catalog") => Body::Catalog(catalog_page(&root, sn, need_device()?)),
        ("notify", "catalog") => Body::CatalogChange(catalog_page(&root, sn, need_device()?)),
        ("response", "deviceinfo") => Body::DeviceInfo(DeviceInfo {
            device_id: need_device()?,
            name: root.text_of("DeviceName").map(str::to_owned),
            manufacturer: root.text_of("Manufacturer").map(str::to_owned),
            model: root.text_of("Model").map(str::to_owned),
            firmware: root.text_of("Firmware").map(str::to_owned),
            channels: root.number("Channel"),
        }),
        ("notify", "alarm") => {
            let info = root.child("Info");
            let from_info = |name: &str| info.and_then(|i| i.number(name));
            Body::Alarm(Alarm {
                sn,
                device_id: need_device()?,
                priority: root.number("AlarmPriority"),
                method: root.number("AlarmMethod"),
                alarm_type: from_info("AlarmType").or_else(|| root.number("AlarmType")),
                time: root.text_of("AlarmTime").map(str::to_owned),
                description: root
                    .text_of("AlarmDescription")
                    .map(|d| d.chars().take(200).collect()),
                longitude: root.number::<f64>("Longitude").filter(|v| v.is_finite()),
                latitude: root.number::<f64>("Latitude").filter(|v| v.is_finite()),
                event_type: info
                    .and_then(|i| i.child("AlarmTypeParam"))
                    .and_then(|p| p.number("EventType")),
            })
        }
        ("query", _) => {
            let device_id = need_device()?;
            Body::Query { cmd, sn, device_id }
        }
        _ => Body::Other {
            root: root.name.clone(),
            cmd,
            device_id,
        },
    })
}

/// A catalog answer's or notification's entries (`DeviceList/Item`).
fn catalog_page(root: &Element, sn: u32, device_id: String) -> CatalogPage {
    CatalogPage {
        sn,
        device_id,
        sum_num: root.number("SumNum").unwrap_or(0),
        items: root
            .child("DeviceList")
            .map(|list| {
                list.children
                    .iter()
                    .filter(|i| i.name.eq_ignore_ascii_case("Item"))
                    .filter_map(catalog_item)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn catalog_item(item: &Element) -> Option<CatalogItem> {
    let id = item.text_of("DeviceID")?.to_owned();
    let coord = |name: &str| {
        item.number::<f64>(name)
            .filter(|v| v.is_finite() && *v != 0.0)
    };
    Some(CatalogItem {
        name: item.text_of("Name").unwrap_or(&id).to_owned(),
        manufacturer: item.text_of("Manufacturer").map(str::to_owned),
        model: item.text_of("Model").map(str::to_owned),
        civil_code: item.text_of("CivilCode").map(str::to_owned),
        parent_id: item.text_of("ParentID").map(str::to_owned),
        business_group: item.text_of("BusinessGroupID").map(str::to_owned),
        online: item
            .text_of("Status")
            .map(|s| s.eq_ignore_ascii_case("ON") || s.eq_ignore_ascii_case("OK") || s == "1"),
        longitude: coord("Longitude"),
        latitude: coord("Latitude"),
        event: item
            .text_of("Event")
            .map(|e| e.trim().to_ascii_uppercase())
            .filter(|e| !e.is_empty()),
        id,
    })
}

fn escape(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// A query to a device (`Catalog`, `DeviceInfo`, `DeviceStatus`), ASCII only.
pub fn query(cmd: &str, sn: u32, device_id: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>{}</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n</Query>\r\n",
        escape(cmd),
        escape(device_id)
    )
    .into_bytes()
}

/// A device's keepalive.
pub fn keepalive(sn: u32, device_id: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
        escape(device_id)
    )
    .into_bytes()
}

/// One page of a device's catalog answer, encoded in GB18030 as devices send it.
pub fn catalog_response(
    sn: u32,
    device_id: &str,
    sum_num: usize,
    items: &[CatalogItem],
) -> Vec<u8> {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<SumNum>{sum_num}</SumNum>\r\n<DeviceList Num=\"{}\">\r\n",
        escape(device_id),
        items.len()
    );
    for i in items {
        s.push_str(&format!(
            "<Item>\r\n<DeviceID>{}</DeviceID>\r\n<Name>{}</Name>\r\n",
            escape(&i.id),
            escape(&i.name)
        ));
        let opt = |s: &mut String, tag: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("<{tag}>{}</{tag}>\r\n", escape(v)));
            }
        };
        opt(&mut s, "Manufacturer", &i.manufacturer);
        opt(&mut s, "Model", &i.model);
        opt(&mut s, "CivilCode", &i.civil_code);
        opt(&mut s, "ParentID", &i.parent_id);
        opt(&mut s, "BusinessGroupID", &i.business_group);
        if let Some(on) = i.online {
            s.push_str(if on {
                "<Status>ON</Status>\r\n"
            } else {
                "<Status>OFF</Status>\r\n"
            });
        }
        if let (Some(lon), Some(lat)) = (i.longitude, i.latitude) {
            s.push_str(&format!(
                "<Longitude>{lon}</Longitude>\r\n<Latitude>{lat}</Latitude>\r\n"
            ));
        }
        s.push_str("<Parental>0</Parental>\r\n</Item>\r\n");
    }
    s.push_str("</DeviceList>\r\n</Response>\r\n");
    encoding_rs::GB18030.encode(&s).0.into_owned()
}

/// A catalog notification (`Notify/Catalog`) of `items`, each with its `event`, in GB18030 as a
/// device sends it.
pub fn catalog_notify(sn: u32, device_id: &str, items: &[CatalogItem]) -> Vec<u8> {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<SumNum>{}</SumNum>\r\n<DeviceList Num=\"{}\">\r\n",
        escape(device_id),
        items.len(),
        items.len()
    );
    for i in items {
        s.push_str(&format!(
            "<Item>\r\n<DeviceID>{}</DeviceID>\r\n<Name>{}</Name>\r\n<Event>{}</Event>\r\n",
            escape(&i.id),
            escape(&i.name),
            escape(i.event.as_deref().unwrap_or("UPDATE"))
        ));
        if let Some(p) = &i.parent_id {
            s.push_str(&format!("<ParentID>{}</ParentID>\r\n", escape(p)));
        }
        if let Some(on) = i.online {
            s.push_str(if on {
                "<Status>ON</Status>\r\n"
            } else {
                "<Status>OFF</Status>\r\n"
            });
        }
        s.push_str("</Item>\r\n");
    }
    s.push_str("</DeviceList>\r\n</Notify>\r\n");
    encoding_rs::GB18030.encode(&s).0.into_owned()
}

/// A device's DeviceInfo answer, encoded in GB18030.
pub fn device_info_response(sn: u32, info: &DeviceInfo) -> Vec<u8> {
    let field = |tag: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!("<{tag}>{}</{tag}>\r\n", escape(v)))
            .unwrap_or_default()
    };
    let s = format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n{}{}{}{}<Channel>{}</Channel>\r\n<Result>OK</Result>\r\n</Response>\r\n",
        escape(&info.device_id),
        field("DeviceName", &info.name),
        field("Manufacturer", &info.manufacturer),
        field("Model", &info.model),
        field("Firmware", &info.firmware),
        info.channels.unwrap_or(0)
    );
    encoding_rs::GB18030.encode(&s).0.into_owned()
}

/// A device's alarm, encoded in GB18030 as devices send it.
pub fn alarm_notify(a: &Alarm) -> Vec<u8> {
    let opt = |tag: &str, v: Option<String>| {
        v.map(|v| format!("<{tag}>{}</{tag}>\r\n", escape(&v)))
            .unwrap_or_default()
    };
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{}</DeviceID>\r\n",
        a.sn,
        escape(&a.device_id)
    );
    s.push_str(&opt("AlarmPriority", a.priority.map(|v| v.to_string())));
    s.push_str(&opt("AlarmMethod", a.method.map(|v| v.to_string())));
    s.push_str(&opt("AlarmTime", a.time.clone()));
    s.push_str(&opt("AlarmDescription", a.description.clone()));
    s.push_str(&opt("Longitude", a.longitude.map(|v| v.to_string())));
    s.push_str(&opt("Latitude", a.latitude.map(|v| v.to_string())));
    if a.alarm_type.is_some() || a.event_type.is_some() {
        s.push_str("<Info>\r\n");
        s.push_str(&opt("AlarmType", a.alarm_type.map(|v| v.to_string())));
        if let Some(e) = a.event_type {
            s.push_str(&format!(
                "<AlarmTypeParam>\r\n<EventType>{e}</EventType>\r\n</AlarmTypeParam>\r\n"
            ));
        }
        s.push_str("</Info>\r\n");
    }
    s.push_str("</Notify>\r\n");
    encoding_rs::GB18030.encode(&s).0.into_owned()
}

/// The platform's answer to an alarm (`Response/Alarm`, `Result` OK).
pub fn alarm_response(sn: u32, device_id: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Result>OK</Result>\r\n</Response>\r\n",
        escape(device_id)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_and_query_round_trip() {
        assert_eq!(
            parse(&keepalive(7, "34020000001320000001")).unwrap(),
            Body::Keepalive {
                sn: 7,
                device_id: "34020000001320000001".into(),
                ok: true
            }
        );
        assert_eq!(
            parse(&query("Catalog", 9, "34020000001320000001")).unwrap(),
            Body::Query {
                cmd: "Catalog".into(),
                sn: 9,
                device_id: "34020000001320000001".into()
            }
        );
    }

    #[test]
    fn a_gb2312_catalog_is_read_with_its_chinese_names() {
        let items = vec![
            CatalogItem {
                id: "34020000001310000001".into(),
                name: "金塔县城东路口 & 北".into(),
                civil_code: Some("620921".into()),
                parent_id: Some("34020000001110000001".into()),
                online: Some(true),
                longitude: Some(98.9),
                latitude: Some(39.98),
                ..CatalogItem::default()
            },
            CatalogItem {
                id: "34020000001320000002".into(),
                name: "鼎新镇政府".into(),
                online: Some(false),
                ..CatalogItem::default()
            },
        ];
        let bytes = catalog_response(3, "34020000001110000001", 5, &items);
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "the body is GB18030, not UTF-8"
        );
        let Body::Catalog(page) = parse(&bytes).unwrap() else {
            panic!("not a catalog")
        };
        assert_eq!(page.sum_num, 5);
        assert_eq!(page.items, items);
        assert_eq!(page.items[0].type_code(), Some(131));
        assert_eq!(page.items[1].type_code(), Some(132));
    }

    #[test]
    fn utf8_bodies_declared_gb2312_are_read_as_utf8() {
        let body = "<?xml version=\"1.0\" encoding=\"GB2312\"?><Response><CmdType>DeviceInfo</CmdType><SN>1</SN><DeviceID>34020000001110000001</DeviceID><DeviceName>东门录像机</DeviceName><Channel>16</Channel></Response>";
        let Body::DeviceInfo(info) = parse(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(info.name.as_deref(), Some("东门录像机"));
        assert_eq!(info.channels, Some(16));
    }

    #[test]
    fn malformed_bodies_are_errors_that_say_what_is_wrong() {
        for (body, says) in [
            (&b""[..], "empty body"),
            (
                b"<Notify><CmdType>Keepalive</CmdType>",
                "ends inside <Notify>",
            ),
            (b"<Notify><SN>1</SN></Notify>", "no CmdType"),
            (
                b"<Notify><CmdType>Keepalive</CmdType></Notify>",
                "Keepalive has no DeviceID",
            ),
            (b"<a></b>", "not XML"),
            (b"\xff\xfe\x00garbage", "no XML element"),
        ] {
            let e = parse(body).unwrap_err();
            assert!(
                e.0.contains(says),
                "{:?}: {e}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = "<a>".repeat(40);
        assert!(parse(deep.as_bytes()).unwrap_err().0.contains("nested"));
        let big = vec![b' '; MAX_BODY + 1];
        assert!(parse(&big).unwrap_err().0.contains("limit"));
    }

    #[test]
    fn catalog_notifications_are_read_with_each_entrys_event() {
        let items = [
            CatalogItem {
                id: "34020000001310000001".into(),
                name: "东门".into(),
                event: Some("OFF".into()),
                ..CatalogItem::default()
            },
            CatalogItem {
                id: "34020000001310000002".into(),
                name: "西门".into(),
                online: Some(true),
                event: Some("ADD".into()),
                ..CatalogItem::default()
            },
        ];
        let Body::CatalogChange(page) =
            parse(&catalog_notify(7, "34020000002000000001", &items)).unwrap()
        else {
            panic!("not a catalog change")
        };
        assert_eq!((page.sn, page.items.len()), (7, 2));
        assert_eq!(page.items[0].event.as_deref(), Some("OFF"));
        assert_eq!(
            (page.items[1].event.as_deref(), page.items[1].online),
            (Some("ADD"), Some(true))
        );
        assert_eq!(page.items[1].name, "西门");
    }

    #[test]
    fn unknown_commands_are_other() {
        let body =
            b"<Notify><CmdType>MediaStatus</CmdType><SN>2</SN><DeviceID>x</DeviceID></Notify>";
        assert_eq!(
            parse(body).unwrap(),
            Body::Other {
                root: "Notify".into(),
                cmd: "MediaStatus".into(),
                device_id: Some("x".into())
            }
        );
    }

    /// An alarm as devices write it (GB18030, type under `Info`), and one as older devices do
    /// (no `Info`): both read; what the platform writes back parses as its answer.
    #[test]
    fn alarms_are_read_with_their_method_type_and_priority() {
        let alarm = Alarm {
            sn: 9,
            device_id: "34020000001310000001".into(),
            priority: Some(1),
            method: Some(5),
            alarm_type: Some(6),
            time: Some("2026-12-07T21:45:00".into()),
            description: Some("东门区域入侵".into()),
            longitude: Some(98.9),
            latitude: Some(39.98),
            event_type: Some(1),
        };
        assert_eq!(parse(&alarm_notify(&alarm)).unwrap(), Body::Alarm(alarm));
        let old = "<Notify><CmdType>Alarm</CmdType><SN>3</SN><DeviceID>34020000001340000001</DeviceID>\
                   <AlarmPriority>4</AlarmPriority><AlarmMethod>2</AlarmMethod><AlarmType>1</AlarmType></Notify>";
        let Body::Alarm(a) = parse(old.as_bytes()).unwrap() else {
            panic!("not an alarm")
        };
        assert_eq!(
            (a.method, a.alarm_type, a.priority),
            (Some(2), Some(1), Some(4))
        );
        assert!(parse(b"<Notify><CmdType>Alarm</CmdType><SN>3</SN></Notify>").is_err());
        let answer = alarm_response(9, "34020000001310000001");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains("<Result>OK</Result>") && text.contains("<SN>9</SN>"),
            "{text}"
        );
    }
}
