//! SDP of GB/T 28181 INVITEs: the platform's offer and the device's answer.
//!
//! The platform offers where it wants the media (`c=`/`m=`), how (`RTP/AVP` over UDP, or
//! `TCP/RTP/AVP` with `a=setup`), what (`s=Play`, `Playback`, `Download`) and the SSRC (`y=`, ten
//! decimal digits). The device answers with its own address and port, the payload it will send
//! (`a=rtpmap`, PS in practice), often the SSRC it will really use (`y=`, which wins over ours) and
//! sometimes its encoder settings (`f=`).
//!
//! Parsing is by hand, not with `sdp-types`: that crate drops the GB-only `y=` and `f=` lines (a
//! second pass would be needed anyway) and refuses a whole answer for things devices do send (a
//! second session `c=`, extra fields, a line that is not `x=…`, no `v=`). Here an answer is read
//! leniently and only what a stream needs is checked, with errors that name the line.

use std::net::IpAddr;

/// The longest SDP read, in bytes (GB/T 28181 bodies are a few hundred bytes).
pub const MAX_SDP: usize = 64 * 1024;

/// How RTP travels, from the platform's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTransport {
    /// RTP over UDP (`RTP/AVP`).
    Udp,
    /// RTP over TCP (`TCP/RTP/AVP`, RFC 4571 framing); the platform listens and the device
    /// connects (`a=setup:passive` in the offer).
    TcpPassive,
    /// RTP over TCP; the platform connects to the port in the device's answer (`a=setup:active`
    /// in the offer).
    TcpActive,
}

/// What the INVITE asks for (`s=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Live view: `s=Play`, `t=0 0`.
    Play,
    /// Recorded video: `s=Playback`, `u=<channel>:0`, `t=<start> <end>`.
    Playback {
        /// Start, Unix seconds.
        start: u64,
        /// End, Unix seconds.
        end: u64,
    },
    /// Recorded video as fast as asked: `s=Download`, as Playback plus `a=downloadspeed:`.
    Download {
        /// Start, Unix seconds.
        start: u64,
        /// End, Unix seconds.
        end: u64,
        /// Times real time.
        speed: u32,
    },
}

/// An `a=setup` value (RFC 4145), as the SDP says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `active`: this side connects.
    Active,
    /// `passive`: this side listens.
    Passive,
    /// `actpass`: either.
    ActPass,
}

/// An SDP that cannot be used, or an offer field that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Longer than [`MAX_SDP`].
    #[error("SDP is {0} bytes, more than the {MAX_SDP} read")]
    TooLong(usize),
    /// No `m=video` line (the count of `x=…` lines read says whether it was SDP at all).
    #[error("SDP has no m=video line ({0} SDP lines read)")]
    NoVideo(usize),
    /// A line that matters is wrong.
    #[error("SDP line {line} ({field}): {what}")]
    Bad {
        /// 1-based line number.
        line: usize,
        /// The field, e.g. `c=`.
        field: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A line that is needed is absent.
    #[error("SDP has no {0}")]
    Missing(&'static str),
    /// `m=video 0`: the media is refused (checked before the address).
    #[error("SDP line {0} (m=video): port 0, the media is refused")]
    Refused(usize),
    /// No `a=rtpmap` of the video media has an encoding we take.
    #[error("SDP line {line} (m=video): no payload we take (PS, H264, H265); offered: {offered}")]
    NoPayload {
        /// The `m=video` line.
        line: usize,
        /// The payloads offered, e.g. `97 MPEG4/90000`.
        offered: String,
    },
    /// A value given to [`ssrc`] or [`Offer::check`] is wrong.
    #[error("{field}: {what}")]
    Invalid {
        /// The argument or offer field.
        field: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// The platform's offer in an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The channel invited (`o=` user, and `u=` for Playback/Download), 20 digits.
    pub channel: String,
    /// Where the platform receives (TCP passive, UDP) or its address (TCP active).
    pub ip: IpAddr,
    /// The platform's port; with [`MediaTransport::TcpActive`] it is nominal (the platform
    /// connects to the device's port), but it is still written.
    pub port: u16,
    /// UDP or TCP, and who connects.
    pub transport: MediaTransport,
    /// `y=`: ten decimal digits, see [`ssrc`].
    pub ssrc: String,
    /// Live, playback or download.
    pub session: SessionKind,
}

impl Offer {
    /// Checks what [`Offer::to_sdp`] does not: an alphanumeric channel of at most 64 characters, a
    /// 10-digit SSRC, a port, `end > start` and a download speed.
    pub fn check(&self) -> Result<(), SdpError> {
        let (c, y) = (&self.channel, &self.ssrc);
        if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let what = format!("'{}' is not an id", clip(c));
            return Err(invalid("offer channel", what));
        }
        if y.len() != 10 || !y.bytes().all(|b| b.is_ascii_digit()) {
            let what = format!("'{}' is not 10 digits", clip(y));
            return Err(invalid("offer ssrc", what));
        }
        if self.port == 0 {
            return Err(invalid("offer port", "0 refuses the media"));
        }
        match self.session {
            SessionKind::Playback { start, end } | SessionKind::Download { start, end, .. }
                if end <= start =>
            {
                let what = format!("end {end} is not after start {start}");
                Err(invalid("offer t=", what))
            }
            SessionKind::Download { speed: 0, .. } => Err(invalid("offer downloadspeed", "0")),
            _ => Ok(()),
        }
    }

    /// The SDP body, CRLF lines in the GB/T 28181 order. It offers PS on 96 (what devices send),
    /// and 97 MPEG4 and 98 H264 as the standard's example and most platforms do; devices answer
    /// PS. Spaces and control characters in `channel` and `ssrc` are dropped so that no field can
    /// add lines; call [`Offer::check`] first.
    pub fn to_sdp(&self) -> String {
        let token = |s: &str| s.replace(|c: char| !c.is_ascii_graphic(), "");
        let (ch, ip) = (token(&self.channel), self.ip);
        let v = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let (name, times) = match self.session {
            SessionKind::Play => ("Play", (0, 0)),
            SessionKind::Playback { start, end } => ("Playback", (start, end)),
            SessionKind::Download { start, end, .. } => ("Download", (start, end)),
        };
        let u = match self.session {
            SessionKind::Play => String::new(),
            _ => format!("u={ch}:0\r\n"),
        };
        let (proto, tcp) = match self.transport {
            MediaTransport::Udp => ("RTP/AVP", ""),
            MediaTransport::TcpPassive => {
                ("TCP/RTP/AVP", "a=setup:passive\r\na=connection:new\r\n")
            }
            MediaTransport::TcpActive => ("TCP/RTP/AVP", "a=setup:active\r\na=connection:new\r\n"),
        };
        let speed = match self.session {
            SessionKind::Download { speed, .. } => format!("a=downloadspeed:{speed}\r\n"),
            _ => String::new(),
        };
        let (port, y, (t0, t1)) = (self.port, token(&self.ssrc), times);
        format!(
            "v=0\r\no={ch} 0 0 IN {v} {ip}\r\ns={name}\r\n{u}c=IN {v} {ip}\r\nt={t0} {t1}\r\n\
             m=video {port} {proto} 96 97 98\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n\
             a=rtpmap:97 MPEG4/90000\r\na=rtpmap:98 H264/90000\r\n{tcp}{speed}y={y}\r\n"
        )
    }
}

/// The `y=` value: `0` live or `1` history, digits 4–8 of the platform's domain id (a 10-digit
/// domain or a 20-digit SIP id; e.g. `20000` of `3402000000`), then `seq` as 4 digits (0–9999;
/// the caller wraps its counter).
pub fn ssrc(live: bool, domain: &str, seq: u16) -> Result<String, SdpError> {
    let d = domain.trim();
    let digits = d.bytes().all(|b| b.is_ascii_digit());
    let Some(mid) = d
        .get(3..8)
        .filter(|_| digits && (d.len() == 10 || d.len() == 20))
    else {
        let what = format!("'{}' is not a 10-digit domain or 20-digit id", clip(domain));
        return Err(invalid("ssrc domain", what));
    };
    if seq > 9999 {
        return Err(invalid(
            "ssrc sequence",
            format!("{seq} is more than 4 digits"),
        ));
    }
    Ok(format!("{}{mid}{seq:04}", if live { '0' } else { '1' }))
}

/// The device's answer to an [`Offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The device's media address (the video `c=`, else the session `c=`).
    pub ip: IpAddr,
    /// The device's port (where the platform connects with [`MediaTransport::TcpActive`]).
    pub port: u16,
    /// `RTP/AVP` is UDP; for TCP, the answer's `a=setup` read per RFC 4145 (`passive`: the device
    /// listens, so [`MediaTransport::TcpActive`]; `active` or none: `TcpPassive`). Devices that
    /// echo the offer's `a=setup` make this the opposite of the offer: use
    /// [`Answer::transport_for`].
    pub transport: MediaTransport,
    /// The RTP payload type taken.
    pub payload_type: u8,
    /// Its encoding, upper case: `PS` (also for `MP2P`), `H264` or `H265` (also for `HEVC`).
    pub encoding: String,
    /// Its clock rate (90000 when the rtpmap has none).
    pub clock_rate: u32,
    /// The `y=` value as written; when present the platform must expect this SSRC, not its own.
    pub ssrc: Option<String>,
    /// The RTP SSRC: `y=` read as a decimal number (leading zeros allowed). `None` when there is no
    /// `y=`, it is not decimal, or it is above `u32::MAX` (ten digits can be): such a device sends
    /// some other SSRC, so the receiver must not filter on it and should learn it from the first
    /// packet instead.
    pub ssrc_value: Option<u32>,
    /// The answer's `a=setup`, as written.
    pub setup: Option<Setup>,
    /// The `f=` line (`v/codec/resolution/framerate/rate type/bitrate` `a/codec/bitrate/sample rate`).
    pub f: Option<String>,
}

impl Answer {
    /// The transport to use after offering `offered`: the offer decides the TCP direction (devices
    /// both answer per RFC 4145 and echo the offer), but UDP against TCP is an error.
    pub fn transport_for(&self, offered: MediaTransport) -> Result<MediaTransport, SdpError> {
        let udp = |t| t == MediaTransport::Udp;
        if udp(offered) == udp(self.transport) {
            return Ok(offered);
        }
        let name = |t| ["TCP (TCP/RTP/AVP)", "UDP (RTP/AVP)"][usize::from(udp(t))];
        let what = format!(
            "offered {}, answered {}",
            name(offered),
            name(self.transport)
        );
        Err(invalid("m=video transport", what))
    }
}

/// Reads a device's answer: LF or CRLF, any case, unknown lines ignored, `c=` at session or video
/// level, the first `m=video` taken. Errors name the line: no `m=video`, no usable `c=`, port 0,
/// no PS/H264/H265 rtpmap (PS preferred when several are offered).
pub fn parse_answer(text: &str) -> Result<Answer, SdpError> {
    let lines = read(text)?;
    let v = video(&lines)?;
    let sec = v.section(&lines);
    let mut offered = Vec::new();
    let mut maps = Vec::new();
    for (_, value) in attrs(sec, "rtpmap") {
        offered.push(clip(value));
        let mut t = value.split_whitespace();
        let (Some(pt), Some(enc)) = (t.next().and_then(|p| p.parse::<u8>().ok()), t.next()) else {
            continue;
        };
        let mut e = enc.split('/');
        let name = match e.next().unwrap_or("").to_ascii_uppercase().as_str() {
            "PS" | "MP2P" => "PS",
            "H264" => "H264",
            "H265" | "HEVC" => "H265",
            _ => continue,
        };
        let Ok(clock) = e.next().map_or(Ok(90_000), str::parse::<u32>) else {
            continue;
        };
        maps.push((pt, name, clock));
    }
    let best = ["PS", "H264", "H265"]
        .iter()
        .find_map(|want| maps.iter().find(|m| m.1 == *want));
    let Some(&(payload_type, encoding, clock_rate)) = best else {
        if offered.is_empty() {
            offered.push(format!("{:?} without a=rtpmap", v.formats));
        }
        let offered = offered.join(", ");
        return Err(SdpError::NoPayload {
            line: v.line,
            offered,
        });
    };
    let transport = match (v.tcp, v.setup) {
        (false, _) => MediaTransport::Udp,
        (true, Some(Setup::Passive)) => MediaTransport::TcpActive,
        (true, _) => MediaTransport::TcpPassive,
    };
    let ssrc = v.gb_line(&lines, 'y');
    let ssrc_value = ssrc
        .as_deref()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()));
    let ssrc_value = ssrc_value.and_then(|s| s.parse::<u64>().ok()?.try_into().ok());
    Ok(Answer {
        ip: v.ip,
        port: v.port,
        transport,
        payload_type,
        encoding: encoding.to_owned(),
        clock_rate,
        ssrc,
        ssrc_value,
        setup: v.setup,
        f: v.gb_line(&lines, 'f'),
    })
}

/// Reads an offer, as a device would (camsim): the channel from `o=`, `s=` with `t=` and
/// `a=downloadspeed` (default 1), TCP direction from `a=setup` (none means active, RFC 4145), and
/// a `y=` of 1–10 digits.
pub fn parse_offer(text: &str) -> Result<Offer, SdpError> {
    let lines = read(text)?;
    let v = video(&lines)?;
    let session = lines.get(..v.first_m).unwrap_or_default();
    let first = |key| session.iter().find(|l| l.key == key);
    let channel = first('o').and_then(|l| l.value.split_whitespace().next());
    let channel = channel.ok_or(SdpError::Missing("o= line (the channel id)"))?;
    let transport = match (v.tcp, v.setup) {
        (false, _) => MediaTransport::Udp,
        (true, Some(Setup::Passive)) => MediaTransport::TcpPassive,
        (true, _) => MediaTransport::TcpActive,
    };
    let s = first('s').ok_or(SdpError::Missing("s= line (Play, Playback, Download)"))?;
    let (start, end) = match first('t') {
        None => (0, 0),
        Some(t) => {
            let mut n = t.value.split_whitespace().map(str::parse::<u64>);
            match (n.next(), n.next()) {
                (Some(Ok(a)), Some(Ok(b))) => (a, b),
                _ => return Err(bad(t, "t=", "is not 't=<start> <end>'")),
            }
        }
    };
    let speed = match attrs(v.section(&lines), "downloadspeed").next() {
        None => 1,
        Some((line, x)) => x.parse().map_err(|_| {
            bad_at(
                line,
                "a=downloadspeed",
                format!("'{}' is not a number", clip(x)),
            )
        })?,
    };
    let session = match s.value.to_ascii_lowercase().as_str() {
        "play" => SessionKind::Play,
        "playback" => SessionKind::Playback { start, end },
        "download" => SessionKind::Download { start, end, speed },
        _ => return Err(bad(s, "s=", "is not Play, Playback or Download")),
    };
    let ssrc = v
        .gb_line(&lines, 'y')
        .ok_or(SdpError::Missing("y= line (SSRC)"))?;
    if ssrc.is_empty() || ssrc.len() > 10 || !ssrc.bytes().all(|b| b.is_ascii_digit()) {
        let line = lines.iter().find(|l| l.key == 'y').map_or(v.line, |l| l.n);
        let what = format!("'{}' is not 1–10 decimal digits", clip(&ssrc));
        return Err(bad_at(line, "y=", what));
    }
    let (channel, ip, port) = (channel.to_owned(), v.ip, v.port);
    Ok(Offer {
        channel,
        ip,
        port,
        transport,
        ssrc,
        session,
    })
}

/// One `x=value` line: `n` is 1-based, `key` lower case, `value` trimmed.
struct Line<'a> {
    n: usize,
    key: char,
    value: &'a str,
}

/// The first `m=video` section.
struct Video {
    first_m: usize,
    m: usize,
    end: usize,
    line: usize,
    ip: IpAddr,
    port: u16,
    tcp: bool,
    formats: Vec<u8>,
    setup: Option<Setup>,
}

impl Video {
    fn section<'l, 'a>(&self, lines: &'l [Line<'a>]) -> &'l [Line<'a>] {
        lines.get(self.m..self.end).unwrap_or_default()
    }

    /// A `y=`/`f=` line: in the video section, else anywhere (some devices put it at the end,
    /// after an audio section).
    fn gb_line(&self, lines: &[Line<'_>], key: char) -> Option<String> {
        let find = |s: &[Line<'_>]| s.iter().find(|l| l.key == key).map(|l| l.value.to_owned());
        find(self.section(lines))
            .or_else(|| find(lines))
            .filter(|v| !v.is_empty())
    }
}

fn invalid(field: &'static str, what: impl Into<String>) -> SdpError {
    let what = what.into();
    SdpError::Invalid { field, what }
}

fn bad_at(line: usize, field: &'static str, what: impl Into<String>) -> SdpError {
    let what = what.into();
    SdpError::Bad { line, field, what }
}

fn clip(s: &str) -> String {
    let printable = |c: char| if c.is_control() { '?' } else { c };
    s.chars().take(60).map(printable).collect()
}

fn bad(l: &Line<'_>, field: &'static str, what: &str) -> SdpError {
    bad_at(l.n, field, format!("'{}' {what}", clip(l.value)))
}

/// The `x=value` lines (others are skipped); LF, CRLF or CR ends.
fn read(text: &str) -> Result<Vec<Line<'_>>, SdpError> {
    if text.len() > MAX_SDP {
        return Err(SdpError::TooLong(text.len()));
    }
    let mut out = Vec::new();
    let mut n = 0;
    for raw in text.split('\n') {
        for piece in raw.strip_suffix('\r').unwrap_or(raw).split('\r') {
            n += 1;
            let Some((k, value)) = piece.split_once('=') else {
                continue;
            };
            let mut k = k.trim().chars();
            if let (Some(key), None) = (k.next(), k.next())
                && key.is_ascii_alphabetic()
            {
                let (key, value) = (key.to_ascii_lowercase(), value.trim());
                out.push(Line { n, key, value });
            }
        }
    }
    Ok(out)
}

/// The values of `a=<name>:value` (name in any case) in `sec`.
fn attrs<'l, 'a>(
    sec: &'l [Line<'a>],
    name: &'l str,
) -> impl Iterator<Item = (usize, &'a str)> + 'l {
    sec.iter().filter(|l| l.key == 'a').filter_map(move |l| {
        let (k, v) = l.value.split_once(':').unwrap_or((l.value, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then_some((l.n, v.trim()))
    })
}

fn video(lines: &[Line<'_>]) -> Result<Video, SdpError> {
    let ms: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].key == 'm').collect();
    let word = |i: &usize| lines[*i].value.split_whitespace().next().unwrap_or("");
    let video = |i: &usize| word(i).eq_ignore_ascii_case("video");
    let first_m = ms.first().copied().unwrap_or(lines.len());
    let at = ms
        .iter()
        .position(video)
        .ok_or(SdpError::NoVideo(lines.len()))?;
    let (m, end) = (ms[at], ms.get(at + 1).copied().unwrap_or(lines.len()));
    let ml = lines.get(m).ok_or(SdpError::NoVideo(lines.len()))?;
    let mut t = ml.value.split_whitespace().skip(1);
    let port = t.next().unwrap_or("");
    let port = port.split('/').next().unwrap_or("").parse::<u16>();
    let port = port.map_err(|_| bad(ml, "m=", "has no port number"))?;
    let proto = t.next().ok_or_else(|| bad(ml, "m=", "has no transport"))?;
    if port == 0 {
        return Err(SdpError::Refused(ml.n));
    }
    let tcp = proto.to_ascii_uppercase().contains("TCP");
    let formats = t.filter_map(|f| f.parse().ok()).collect();
    let sec = lines.get(m..end).unwrap_or_default();
    let setup = attrs(sec, "setup").find_map(|(_, v)| match v.to_ascii_lowercase().as_str() {
        "active" => Some(Setup::Active),
        "passive" => Some(Setup::Passive),
        "actpass" => Some(Setup::ActPass),
        _ => None,
    });
    // The video section's c= wins over the session's; the first bad one is reported if none works.
    let session = lines.get(..first_m).unwrap_or_default();
    let mut first_err = None;
    for l in sec.iter().chain(session).filter(|l| l.key == 'c') {
        match connection(l) {
            Ok(ip) => {
                let line = ml.n;
                return Ok(Video {
                    first_m,
                    m,
                    end,
                    line,
                    ip,
                    port,
                    tcp,
                    formats,
                    setup,
                });
            }
            Err(e) => _ = first_err.get_or_insert(e),
        }
    }
    Err(first_err.unwrap_or(SdpError::Missing("c= line at session level or in m=video")))
}

/// `IN IP4 <address>[/ttl]`, unicast or multicast, not 0.0.0.0 (hold).
fn connection(l: &Line<'_>) -> Result<IpAddr, SdpError> {
    let mut t = l.value.split_whitespace();
    let (Some(net), Some(_), Some(addr)) = (t.next(), t.next(), t.next()) else {
        return Err(bad(l, "c=", "is not 'IN IP4 <address>'"));
    };
    let ip = addr.split('/').next().unwrap_or("").parse::<IpAddr>();
    match ip {
        Ok(ip) if net.eq_ignore_ascii_case("IN") && !ip.is_unspecified() => Ok(ip),
        Ok(_) => Err(bad(l, "c=", "is not a usable address")),
        Err(_) => Err(bad(l, "c=", "has no IP address (names are not resolved)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    }

    fn offer(transport: MediaTransport, session: SessionKind) -> Offer {
        Offer {
            channel: "34020000001320000001".into(),
            ip: "192.168.1.10".parse().unwrap(),
            port: 30000,
            transport,
            ssrc: "0200000001".into(),
            session,
        }
    }

    const HEAD: [&str; 5] = [
        "v=0",
        "o=34020000001320000001 0 0 IN IP4 192.168.1.10",
        "s=Play",
        "c=IN IP4 192.168.1.10",
        "t=0 0",
    ];
    const MAPS: [&str; 4] = [
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
        "a=rtpmap:97 MPEG4/90000",
        "a=rtpmap:98 H264/90000",
    ];

    #[test]
    fn offers_are_written_exactly() {
        let udp = [
            &HEAD[..],
            &["m=video 30000 RTP/AVP 96 97 98"],
            &MAPS,
            &["y=0200000001"],
        ];
        let o = offer(MediaTransport::Udp, SessionKind::Play);
        assert_eq!(o.to_sdp(), crlf(&udp.concat()));
        for (t, setup) in [
            (MediaTransport::TcpPassive, "a=setup:passive"),
            (MediaTransport::TcpActive, "a=setup:active"),
        ] {
            let m = ["m=video 30000 TCP/RTP/AVP 96 97 98"];
            let tail = [setup, "a=connection:new", "y=0200000001"];
            let want = crlf(&[&HEAD[..], &m, &MAPS, &tail].concat());
            assert_eq!(offer(t, SessionKind::Play).to_sdp(), want);
        }
        let mut o = offer(
            MediaTransport::Udp,
            SessionKind::Download {
                start: 1,
                end: 9,
                speed: 4,
            },
        );
        o.ssrc = "1200000002".into();
        let sdp = o.to_sdp();
        assert!(
            sdp.contains(
                "\r\ns=Download\r\nu=34020000001320000001:0\r\nc=IN IP4 192.168.1.10\r\nt=1 9\r\n"
            ),
            "{sdp}"
        );
        assert!(
            sdp.ends_with("a=downloadspeed:4\r\ny=1200000002\r\n"),
            "{sdp}"
        );
        o.ip = "fe80::1".parse().unwrap();
        assert!(o.to_sdp().contains("\r\nc=IN IP6 fe80::1\r\n"));
    }

    #[test]
    fn offers_are_checked_and_read_back() {
        let mut o = offer(MediaTransport::Udp, SessionKind::Play);
        assert_eq!(o.check(), Ok(()));
        o.channel = "3402\r\nm=video 1 RTP/AVP 0".into();
        assert!(
            o.check()
                .unwrap_err()
                .to_string()
                .starts_with("offer channel")
        );
        assert_eq!(o.to_sdp().matches("\r\n").count(), 11, "no line was added");
        o = offer(
            MediaTransport::Udp,
            SessionKind::Playback { start: 5, end: 5 },
        );
        assert!(o.check().unwrap_err().to_string().contains("offer t="));
        o.session = SessionKind::Play;
        o.ssrc = "123".into();
        assert!(o.check().unwrap_err().to_string().contains("offer ssrc"));
        for t in [
            MediaTransport::Udp,
            MediaTransport::TcpPassive,
            MediaTransport::TcpActive,
        ] {
            for s in [
                SessionKind::Play,
                SessionKind::Playback {
                    start: 1_700_000_000,
                    end: 1_700_003_600,
                },
                SessionKind::Download {
                    start: 1,
                    end: 2,
                    speed: 8,
                },
            ] {
                let o = offer(t, s);
                assert_eq!(parse_offer(&o.to_sdp()), Ok(o));
            }
        }
        let talk = offer(MediaTransport::Udp, SessionKind::Play)
            .to_sdp()
            .replace("s=Play", "s=Talk");
        assert_eq!(
            parse_offer(&talk).unwrap_err().to_string(),
            "SDP line 3 (s=): 'Talk' is not Play, Playback or Download"
        );
    }

    #[test]
    fn ssrc_is_built_from_the_domain() {
        assert_eq!(ssrc(true, "3402000000", 1).unwrap(), "0200000001");
        assert_eq!(
            ssrc(false, "34020000002000000001", 9999).unwrap(),
            "1200009999"
        );
        assert_eq!(ssrc(true, " 4401020049 ", 42).unwrap(), "0102000042");
        for bad in [
            "",
            "340200000",
            "34020000001",
            "34020a0000",
            "３４０２０００００",
        ] {
            let e = ssrc(true, bad, 1).unwrap_err().to_string();
            assert!(e.starts_with("ssrc domain:"), "{bad}: {e}");
        }
        assert!(
            ssrc(true, "3402000000", 10000)
                .unwrap_err()
                .to_string()
                .contains("sequence")
        );
    }

    const HIK: &str = "v=0\r\no=34020000001320000001 0 0 IN IP4 192.168.1.64\r\ns=Play\r\n\
        c=IN IP4 192.168.1.64\r\nt=0 0\r\nm=video 15060 RTP/AVP 96\r\na=sendonly\r\n\
        a=rtpmap:96 PS/90000\r\ny=0200000005\r\nf=v/2/5/25/1/4096a/1/8/1\r\n";
    const DAHUA: &str = "v=0\r\no=34020000001320000001 2893 2893 IN IP4 192.168.1.108\r\n\
        s=Play\r\nc=IN IP4 192.168.1.108\r\nt=0 0\r\nm=video 20000 RTP/AVP 98 96\r\n\
        a=rtpmap:98 H264/90000\r\na=rtpmap:96 ps/90000\r\na=sendonly\r\n\
        a=username:34020000001320000001\r\na=password:12345678\r\n";
    const TCP_ACTIVE: &str = "v=0\r\no=34020000001320000001 0 0 IN IP4 10.0.0.7\r\ns=Play\r\n\
        c=IN IP4 10.0.0.7\r\nt=0 0\r\nm=video 40012 TCP/RTP/AVP 96\r\na=sendonly\r\n\
        a=rtpmap:96 PS/90000\r\na=setup:active\r\na=connection:new\r\ny=0200000002\r\n";
    const LF_SESSION_C: &str = "v=0\no=34020000001320000001 0 0 In Ip4 172.16.0.5\ns=Play\n\
        C=In Ip4 172.16.0.5\nt=0 0\nm=audio 0 RTP/AVP 8\na=rtpmap:8 PCMA/8000\n\
        M=Video 6000 RTP/AVP 98\nA=RTPMAP:98 h264/90000\na=SendOnly\na=x-vendor:1\ny=4294967296\n";

    #[test]
    fn real_answers_are_read() {
        let a = parse_answer(HIK).unwrap();
        assert_eq!((a.ip, a.port), ("192.168.1.64".parse().unwrap(), 15060));
        assert_eq!(
            (a.transport, a.payload_type, a.clock_rate),
            (MediaTransport::Udp, 96, 90000)
        );
        assert_eq!(a.encoding, "PS");
        assert_eq!(
            (a.ssrc.as_deref(), a.ssrc_value),
            (Some("0200000005"), Some(200_000_005))
        );
        assert_eq!(
            (a.f.as_deref(), a.setup),
            (Some("v/2/5/25/1/4096a/1/8/1"), None)
        );

        let a = parse_answer(DAHUA).unwrap();
        assert_eq!(
            (a.port, a.payload_type, a.encoding.as_str()),
            (20000, 96, "PS"),
            "PS is preferred"
        );
        assert_eq!((a.ssrc, a.ssrc_value, a.f), (None, None, None));

        let a = parse_answer(TCP_ACTIVE).unwrap();
        assert_eq!((a.ip, a.port), ("10.0.0.7".parse().unwrap(), 40012));
        assert_eq!(
            (a.setup, a.transport),
            (Some(Setup::Active), MediaTransport::TcpPassive)
        );
        assert_eq!(
            a.transport_for(MediaTransport::TcpActive),
            Ok(MediaTransport::TcpActive)
        );
        assert_eq!(
            a.transport_for(MediaTransport::TcpPassive),
            Ok(MediaTransport::TcpPassive)
        );
        let e = a
            .transport_for(MediaTransport::Udp)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "m=video transport: offered UDP (RTP/AVP), answered TCP (TCP/RTP/AVP)"
        );
        let rfc = parse_answer(&TCP_ACTIVE.replace("setup:active", "SETUP:Passive")).unwrap();
        assert_eq!(rfc.transport, MediaTransport::TcpActive);

        let a = parse_answer(LF_SESSION_C).unwrap();
        assert_eq!((a.ip, a.port), ("172.16.0.5".parse().unwrap(), 6000));
        assert_eq!((a.payload_type, a.encoding.as_str()), (98, "H264"));
        assert_eq!(
            (a.ssrc.as_deref(), a.ssrc_value),
            (Some("4294967296"), None),
            "above u32"
        );
        let z = parse_answer(&LF_SESSION_C.replace("y=4294967296", "y=0000000123")).unwrap();
        assert_eq!(z.ssrc_value, Some(123));
        let media_c = LF_SESSION_C.replace("a=SendOnly", "c=IN IP4 172.16.0.9/64");
        assert_eq!(
            parse_answer(&media_c).unwrap().ip,
            "172.16.0.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_answers_name_the_problem() {
        let e = |t: &str| parse_answer(t).unwrap_err().to_string();
        assert_eq!(e(""), "SDP has no m=video line (0 SDP lines read)");
        assert_eq!(
            e("\u{0}garbage\n\u{ff}"),
            "SDP has no m=video line (0 SDP lines read)"
        );
        assert_eq!(
            e(&HIK.replace("m=video", "m=audio")),
            "SDP has no m=video line (10 SDP lines read)"
        );
        assert_eq!(
            e(&HIK.replace("15060", "0")),
            "SDP line 6 (m=video): port 0, the media is refused"
        );
        assert_eq!(
            e(&HIK.replace("15060", "7x")),
            "SDP line 6 (m=): 'video 7x RTP/AVP 96' has no port number"
        );
        assert_eq!(
            e(&HIK.replace("c=IN IP4 192.168.1.64\r\n", "")),
            "SDP has no c= line at session level or in m=video"
        );
        assert_eq!(
            e(&HIK.replace("IP4 192.168.1.64\r\nt", "IP4 0.0.0.0\r\nt")),
            "SDP line 4 (c=): 'IN IP4 0.0.0.0' is not a usable address"
        );
        assert!(
            e(&HIK.replace("IP4 192.168.1.64\r\nt", "IP4 ipc.local\r\nt"))
                .starts_with("SDP line 4 (c=)")
        );
        assert_eq!(
            e(&HIK.replace("PS/90000", "MPEG4/90000")),
            "SDP line 6 (m=video): no payload we take (PS, H264, H265); offered: 96 MPEG4/90000"
        );
        assert!(
            e(&HIK.replace("a=rtpmap:96 PS/90000\r\n", ""))
                .ends_with("offered: [96] without a=rtpmap")
        );
        assert_eq!(
            e(&"a".repeat(MAX_SDP + 1)),
            format!("SDP is {} bytes, more than the {MAX_SDP} read", MAX_SDP + 1)
        );
        let refused = HIK
            .replace("15060", "0")
            .replace("IP4 192.168.1.64\r\nt", "IP4 0.0.0.0\r\nt");
        assert_eq!(
            e(&refused),
            "SDP line 6 (m=video): port 0, the media is refused"
        );
        let big = format!("{HIK}{}", "a=x-pad:0123456789\r\n".repeat(3000));
        assert_eq!(
            parse_answer(&big).unwrap().port,
            15060,
            "long but under the limit"
        );
    }

    #[test]
    fn random_and_shuffled_input_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let alphabet = b"vmcaty=fos IN IP4 0123456789./:\r\n\xff\x00 videoRTP/AVPTCPsetup:rtpmap";
        let mut parsed = 0;
        for round in 0..4000 {
            let text = if round % 2 == 0 {
                let bytes: Vec<u8> = (0..next(300))
                    .map(|_| alphabet[next(alphabet.len())])
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                let base = [HIK, DAHUA, TCP_ACTIVE, LF_SESSION_C][next(4)];
                let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
                for _ in 0..=next(3) {
                    if lines.is_empty() {
                        break;
                    }
                    let (i, j) = (next(lines.len()), next(lines.len()));
                    match next(4) {
                        0 => lines.swap(i, j),
                        1 => _ = lines.remove(i),
                        2 => lines[i] = lines[i].chars().rev().collect(),
                        _ => {
                            let k = next(lines[i].len() + 1);
                            lines[i].truncate(k)
                        }
                    }
                }
                lines.join(if next(2) == 0 { "\n" } else { "\r\n" })
            };
            if let Ok(a) = parse_answer(&text) {
                parsed += 1;
                assert!(a.port != 0 && !a.ip.is_unspecified(), "{text:?}");
                assert!(
                    ["PS", "H264", "H265"].contains(&a.encoding.as_str()),
                    "{text:?}"
                );
            }
            let _ = parse_offer(&text);
        }
        assert!(parsed > 100, "mutations kept some answers valid ({parsed})");
    }
}
