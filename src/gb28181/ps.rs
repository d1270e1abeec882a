//! MPEG-PS (ISO/IEC 13818-1 program stream) demuxing for GB/T 28181 media: PS packs carried in RTP
//! become the access units the keyframe gate and decoders take.
//!
//! [`PsDemuxer`] takes the PS bytes (RTP payloads in sequence order) in chunks of any size and gives
//! back H.264 / H.265 access units in Annex B form, as carried.
//!
//! Handled: MPEG-2 pack headers (with stuffing); system headers and other non-PES ids (`0xBD`,
//! `0xBE`, `0xBF` …) skipped by length; the program stream map (stream_type per stream id: `0x1B`
//! H.264, `0x24` H.265; audio types such as `0x0F` AAC or `0x90` G.711A are only recorded); PES
//! headers with PTS; `PES_packet_length` 0 for video (the payload runs to the next pack or PES start
//! code); the program end code (flushes the unit in progress). Without a map (ffmpeg writes none)
//! the codec is recognised from the first VPS/SPS/PPS/AUD. Access units are cut where the NAL units
//! say a picture starts (an AUD, parameter set or SEI after a slice, or the first slice of a
//! picture), so a frame may span any number of PES packets and packs, and one PES may hold the end of
//! one frame and the start of the next (ffmpeg's 2048-byte packs). A PES's PTS goes, as the standard
//! says, to the first unit that starts in it; a later one starting in the same PES gets `None` (no
//! interpolation). For video of another codec, units are cut at each new PTS.
//!
//! Damage (no start code where one is due, a bad header, a video PES cut short by a pack or PES start
//! code inside its declared length, a unit over [`MAX_UNIT_BYTES`]) drops the unit being assembled,
//! even one that may have been whole, is counted in [`PsStats`] and kept as a [`PsError`] with its
//! byte offset; the demuxer resyncs at the next pack header, then at the next picture start.
//!
//! Not handled: MPEG-1 system streams (12-byte packs, MPEG-1 PES headers: damage), scrambled PES
//! (damage), a second video stream (ignored), audio (PES packets skipped and counted), the PSM CRC
//! (not checked), 33-bit PTS wrap (values are given as carried).
//!
//! Memory: the unit being assembled never exceeds [`MAX_UNIT_BYTES`] (8 MiB); besides it the demuxer
//! keeps at most one unfinished header (a PSM is at most 64 KiB) and the chunk being pushed.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// The largest access unit assembled (8 MiB); a bigger one is dropped as damage.
pub const MAX_UNIT_BYTES: usize = 8 << 20;
/// PES start offsets remembered, for PTS assignment, within one unit.
const MAX_MARKS: usize = 1024;

/// The video codec of the demuxed stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (stream_type `0x1B`).
    H264,
    /// H.265 (stream_type `0x24`).
    H265,
    /// Another codec, or not known yet.
    #[default]
    Unknown,
}

/// One video access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsUnit {
    /// Its codec.
    pub codec: VideoCodec,
    /// PTS (90 kHz, 33 bits) of the PES it starts in, unless an earlier unit took it.
    pub pts_90k: Option<u64>,
    /// The NAL units with their start codes (Annex B), as carried.
    pub data: Bytes,
    /// Holds an IDR (H.264 type 5) or IRAP (H.265 types 16..=21) slice.
    pub keyframe: bool,
    /// Holds a VPS (H.265).
    pub has_vps: bool,
    /// Holds an SPS.
    pub has_sps: bool,
    /// Holds a PPS.
    pub has_pps: bool,
}

/// The demuxer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PsStats {
    /// Access units given out.
    pub units: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Times sync was lost (each [`PsError`], and garbage before the first pack header).
    pub resyncs: u64,
    /// Bytes thrown away: garbage skipped and units dropped.
    pub dropped_bytes: u64,
    /// Units dropped unfinished or damaged.
    pub dropped_units: u64,
    /// PES packets read (all streams).
    pub pes_packets: u64,
    /// Audio PES packets skipped.
    pub audio_packets: u64,
}

/// Damage in the stream: what, and where (offsets count from the first byte pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("PS byte {offset}: {kind} (id 0x{id:02x}); resyncing at the next pack header")]
pub struct PsError {
    /// Where the damage was seen.
    pub offset: u64,
    /// The stream id concerned, or the first byte found where a start code was due.
    pub id: u8,
    /// What is wrong.
    pub kind: Damage,
}

/// What [`PsError`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// Bytes that are not a start code where a pack header or a packet was due.
    #[error("no start code where one was due")]
    NoStartCode,
    /// A pack header that is not MPEG-2.
    #[error("pack header not MPEG-2")]
    PackHeader,
    /// A program stream map whose lengths run past its end.
    #[error("bad program stream map")]
    Psm,
    /// A PES header that is not MPEG-2, longer than its packet, or of length 0 on audio.
    #[error("bad PES header")]
    PesHeader,
    /// A scrambled video PES.
    #[error("scrambled PES (not supported)")]
    Scrambled,
    /// A video PES cut short: a pack or PES start code came inside its declared length.
    #[error("PES cut short by a start code inside its declared length")]
    Truncated,
    /// An access unit grew over [`MAX_UNIT_BYTES`].
    #[error("access unit over the 8 MiB limit")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, Default)]
enum State {
    /// Looking for a pack header.
    #[default]
    Seek,
    /// At a start code.
    Top,
    /// In a video PES payload (`left`: `None` when unbounded); `keep`: the selected stream.
    Video {
        left: Option<usize>,
        keep: bool,
        id: u8,
    },
    /// Skipping a packet's remaining bytes.
    Skip(usize),
}

/// `Ok(n)`: `n` bytes consumed, go on; `Err(n)`: `n` bytes consumed, wait for more input.
type Step = Result<usize, usize>;

// NAL unit properties (bits), also merged over a unit.
const VCL: u8 = 1;
const START: u8 = 2;
const FIRST: u8 = 4;
const KEY: u8 = 8;
const VPS: u8 = 16;
const SPS: u8 = 32;
const PPS: u8 = 64;

/// Demuxes a GB/T 28181 PS stream into video access units; see the module documentation.
#[derive(Debug, Default)]
pub struct PsDemuxer {
    inp: Vec<u8>,
    base: u64,
    state: State,
    seek_counted: bool,
    /// (stream id, stream_type) from the PSM, one entry per id.
    types: Vec<(u8, u8)>,
    video_id: Option<u8>,
    codec: VideoCodec,
    au: BytesMut,
    au_base: u64,
    scan: usize,
    synced: bool,
    au_pts: Option<u64>,
    flags: u8,
    marks: VecDeque<(u64, Option<u64>)>,
    stats: PsStats,
    last_error: Option<PsError>,
}

impl PsDemuxer {
    /// A demuxer waiting for its first pack header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the stream; returns the access units they completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<PsUnit> {
        let mut out = Vec::new();
        let mut inp = std::mem::take(&mut self.inp);
        inp.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let (r, at) = (&inp[pos.min(inp.len())..], self.base + pos as u64);
            let step = match self.state {
                State::Seek => self.seek(r, at),
                State::Top => self.packet(r, at, &mut out),
                State::Video { .. } => self.video(r, at, &mut out),
                State::Skip(n) if n > r.len() => {
                    self.state = State::Skip(n - r.len());
                    Err(r.len())
                }
                State::Skip(n) => {
                    self.state = State::Top;
                    Ok(n)
                }
            };
            match step {
                Ok(n) => pos += n,
                Err(n) => {
                    pos += n;
                    break;
                }
            }
        }
        let pos = pos.min(inp.len());
        inp.drain(..pos);
        self.base += pos as u64;
        self.inp = inp;
        out
    }

    /// The stream ended: gives out the unit in progress; the demuxer then waits for a pack header.
    pub fn finish(&mut self) -> Vec<PsUnit> {
        let mut out = Vec::new();
        let inp = std::mem::take(&mut self.inp);
        if let State::Video {
            left: l,
            keep: true,
            ..
        } = self.state
        {
            let n = l.map_or(inp.len(), |l| l.min(inp.len()));
            self.es_append(inp.get(..n).unwrap_or_default(), self.base, &mut out);
        }
        self.base += inp.len() as u64;
        self.flush(&mut out);
        self.state = State::Seek;
        self.seek_counted = false;
        out
    }

    /// The counters.
    pub fn stats(&self) -> PsStats {
        self.stats
    }

    /// The last damage seen, if any.
    pub fn last_error(&self) -> Option<PsError> {
        self.last_error
    }

    /// The video codec (from the stream map, else recognised from the stream).
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// The stream_type the stream map gave `stream_id`, if any.
    pub fn stream_type(&self, stream_id: u8) -> Option<u8> {
        self.types.iter().find(|e| e.0 == stream_id).map(|e| e.1)
    }

    fn seek(&mut self, r: &[u8], at: u64) -> Step {
        let found = find_pack(r);
        let skip = found.map_or(r.len().saturating_sub(3), |(k, _)| k);
        if skip > 0 {
            self.stats.dropped_bytes += skip as u64;
            if !std::mem::replace(&mut self.seek_counted, true) {
                self.stats.resyncs += 1;
                self.last_error = Some(err(at, r[0], Damage::NoStartCode));
            }
        }
        if found.is_none_or(|(_, whole)| !whole) {
            return Err(skip);
        }
        self.state = State::Top;
        self.seek_counted = false;
        Ok(skip)
    }

    /// A packet at a start code.
    fn packet(&mut self, r: &[u8], at: u64, out: &mut Vec<PsUnit>) -> Step {
        let Some(&id) = r.get(3) else { return Err(0) };
        if r.starts_with(&[0, 0, 0]) {
            return Ok(1); // zero stuffing before a start code
        }
        if !r.starts_with(&[0, 0, 1]) || id < 0xB9 {
            return self.damage(at, r[0], Damage::NoStartCode);
        }
        if id == 0xB9 {
            self.flush(out);
            return Ok(4);
        }
        if id == 0xBA {
            let Some(&b13) = r.get(13) else { return Err(0) };
            let n = 14 + usize::from(b13 & 7);
            return match r[4] & 0xC0 == 0x40 {
                false => self.damage(at, id, Damage::PackHeader),
                true if r.len() < n => Err(0),
                true => Ok(n),
            };
        }
        let Some(len) = r.get(4..6) else {
            return Err(0);
        };
        let plen = usize::from(len[0]) << 8 | usize::from(len[1]);
        if id == 0xBC {
            let Some(body) = r.get(6..6 + plen) else {
                return Err(0);
            };
            let Some(entries) = parse_psm(body) else {
                return self.damage(at, id, Damage::Psm);
            };
            self.apply_psm(&entries);
            return Ok(6 + plen);
        }
        if !(0xC0..=0xEF).contains(&id) {
            self.state = State::Skip(plen);
            return Ok(6);
        }
        let Some(&hl) = r.get(8) else { return Err(0) };
        let (hl, video) = (usize::from(hl), id >= 0xE0);
        if r[6] & 0xC0 != 0x80 || (plen != 0 && plen < 3 + hl) || (plen == 0 && !video) {
            return self.damage(at, id, Damage::PesHeader);
        }
        let Some(opt) = r.get(9..9 + hl) else {
            return Err(0);
        };
        let pts = if r[7] & 0x80 != 0 { pts_of(opt) } else { None };
        let left = (plen != 0).then(|| plen - 3 - hl);
        self.stats.pes_packets += 1;
        if !video {
            self.stats.audio_packets += 1;
            self.state = State::Skip(left.unwrap_or(0));
            return Ok(9 + hl);
        }
        if self.video_id.is_none() {
            self.video_id = Some(id);
            self.update_codec();
        }
        let keep = self.video_id == Some(id);
        if keep && r[6] & 0x30 != 0 {
            return self.damage(at, id, Damage::Scrambled);
        }
        if keep {
            self.pes_start(pts, out);
        }
        self.state = State::Video { left, keep, id };
        Ok(9 + hl)
    }

    /// Video PES payload: to its length, or (unbounded) to the next system start code.
    fn video(&mut self, r: &[u8], at: u64, out: &mut Vec<PsUnit>) -> Step {
        let State::Video { left, keep, id } = self.state else {
            return Ok(0);
        };
        let chunk = &r[..left.map_or(r.len(), |l| l.min(r.len()))];
        let cut = find_system_code(chunk);
        // Bytes that may begin a start code wait for the next chunk.
        let hold = if left.is_none_or(|l| l > chunk.len()) {
            trailing_prefix(chunk)
        } else {
            0
        };
        let take = cut.unwrap_or(chunk.len() - hold);
        let left = left.map(|l| l - take);
        self.state = match (cut, left) {
            (None, Some(l)) if l > 0 => State::Video { left, keep, id },
            (None, None) => State::Video { left, keep, id },
            _ => State::Top,
        };
        if keep && take > 0 {
            self.es_append(&chunk[..take], at, out);
        }
        match (cut, left) {
            (Some(_), Some(_)) => self
                .damage(at + take as u64, id, Damage::Truncated)
                .map(|_| take),
            (None, l) if l != Some(0) => Err(take),
            _ => Ok(take),
        }
    }

    fn apply_psm(&mut self, entries: &[(u8, u8)]) {
        for &(stream_type, id) in entries {
            self.types.retain(|e| e.0 != id);
            self.types.push((id, stream_type));
            if self.video_id.is_none() && (0xE0..=0xEF).contains(&id) {
                self.video_id = Some(id);
            }
        }
        self.update_codec();
    }

    fn update_codec(&mut self) {
        let Some(id) = self.video_id else { return };
        let codec = match self.stream_type(id) {
            None => return,
            Some(0x1B) => VideoCodec::H264,
            Some(0x24) => VideoCodec::H265,
            _ => VideoCodec::Unknown,
        };
        if codec != self.codec {
            self.drop_au();
            self.codec = codec;
        }
    }

    fn pes_start(&mut self, pts: Option<u64>, out: &mut Vec<PsUnit>) {
        self.marks
            .push_back((self.au_base + self.au.len() as u64, pts));
        if self.marks.len() > MAX_MARKS {
            self.marks.pop_front();
        }
        let new_pts = pts.is_some() && (self.au.is_empty() || pts != self.au_pts);
        if self.codec == VideoCodec::Unknown && new_pts {
            if !self.au.is_empty() {
                self.emit(self.au.len(), out);
            }
            self.au_pts = pts;
        }
    }

    fn es_append(&mut self, data: &[u8], at: u64, out: &mut Vec<PsUnit>) {
        if self.au.len() + data.len() > MAX_UNIT_BYTES {
            self.stats.dropped_bytes += data.len() as u64;
            self.damage(at, self.video_id.unwrap_or(0), Damage::TooLarge)
                .ok();
            return;
        }
        self.au.extend_from_slice(data);
        // Start code, NAL header and the byte holding first_mb_in_slice / first_slice_segment_in_pic.
        let need = if self.codec == VideoCodec::H265 { 6 } else { 5 };
        loop {
            let Some(j) = self.au.get(self.scan..).and_then(find_start) else {
                self.scan = self.au.len().saturating_sub(2);
                break;
            };
            let p = self.scan + j;
            if self.au.len() < p + need {
                self.scan = p;
                break;
            }
            self.scan = p + 3;
            self.on_nal(p, out);
        }
        if self.codec != VideoCodec::Unknown && !self.synced {
            self.discard(self.scan.saturating_sub(1));
        }
    }

    /// A NAL unit whose start code `00 00 01` is at `p` in the unit buffer.
    fn on_nal(&mut self, p: usize, out: &mut Vec<PsUnit>) {
        let h = self.au.get(p + 3..).unwrap_or_default();
        if self.codec == VideoCodec::Unknown {
            let mapped = self.video_id.and_then(|s| self.stream_type(s)).is_some();
            match sniff(h) {
                Some(codec) if !mapped => (self.codec, self.synced) = (codec, false),
                _ => return,
            }
        }
        let nal = classify(self.codec, h);
        let a = p - usize::from(p > 0 && self.au[p - 1] == 0);
        let starts = (nal & START != 0) || (nal & (VCL | FIRST) == (VCL | FIRST));
        if starts && !self.synced {
            self.discard(a);
            (self.synced, self.flags) = (true, 0);
            self.begin_au(self.au_base + (p - a) as u64);
        } else if starts && self.flags & VCL != 0 {
            self.emit(a, out);
            self.begin_au(self.au_base + (p - a) as u64);
        }
        self.flags |= nal & (VCL | KEY | VPS | SPS | PPS);
    }

    /// A unit starts with the start code at stream offset `at`: it takes the PTS of the PES holding it.
    fn begin_au(&mut self, at: u64) {
        self.au_pts = None;
        if let Some(i) = self.marks.iter().rposition(|m| m.0 <= at) {
            self.marks.drain(..i);
            self.au_pts = self.marks.front_mut().and_then(|m| m.1.take());
        }
    }

    fn discard(&mut self, n: usize) {
        self.au.advance(n);
        self.au_base += n as u64;
        self.scan -= n;
        self.stats.dropped_bytes += n as u64;
    }

    fn emit(&mut self, n: usize, out: &mut Vec<PsUnit>) {
        let data = self.au.split_to(n.min(self.au.len())).freeze();
        self.au_base += data.len() as u64;
        self.scan = self.scan.saturating_sub(data.len());
        let f = std::mem::take(&mut self.flags);
        self.stats.units += 1;
        self.stats.keyframes += u64::from(f & KEY != 0);
        out.push(PsUnit {
            codec: self.codec,
            pts_90k: self.au_pts,
            data,
            keyframe: f & KEY != 0,
            has_vps: f & VPS != 0,
            has_sps: f & SPS != 0,
            has_pps: f & PPS != 0,
        });
    }

    /// Gives out the unit in progress if it holds a picture (or the codec is unknown), else drops it.
    fn flush(&mut self, out: &mut Vec<PsUnit>) {
        let whole = self.synced && self.flags & VCL != 0;
        if !self.au.is_empty() && (self.codec == VideoCodec::Unknown || whole) {
            self.emit(self.au.len(), out);
        }
        self.drop_au();
    }

    fn damage(&mut self, offset: u64, id: u8, kind: Damage) -> Step {
        let e = err(offset, id, kind);
        tracing::debug!(%e, "PS damage");
        self.stats.resyncs += 1;
        self.seek_counted = true;
        self.last_error = Some(e);
        self.drop_au();
        self.state = State::Seek;
        Ok(0)
    }

    fn drop_au(&mut self) {
        let n = self.au.len();
        if n > 0 {
            self.stats.dropped_bytes += n as u64;
            let unit = self.synced || self.codec == VideoCodec::Unknown;
            self.stats.dropped_units += u64::from(unit);
        }
        self.au.clear();
        self.au_base += n as u64;
        (self.scan, self.synced, self.flags, self.au_pts) = (0, false, 0, None);
        self.marks.clear();
    }
}

fn err(offset: u64, id: u8, kind: Damage) -> PsError {
    PsError { offset, id, kind }
}

/// The next MPEG-2 pack header: its offset, and whether its marker byte has been seen.
fn find_pack(b: &[u8]) -> Option<(usize, bool)> {
    let mut i = 0;
    while let Some(j) = b.get(i..)?.windows(4).position(|w| w == [0, 0, 1, 0xBA]) {
        match b.get(i + j + 4) {
            None => return Some((i + j, false)),
            Some(m) if m & 0xC0 == 0x40 => return Some((i + j, true)),
            Some(_) => i += j + 1,
        }
    }
    None
}

/// The offset of a `00 00 01` start code prefix.
fn find_start(b: &[u8]) -> Option<usize> {
    b.windows(3).position(|w| w == [0, 0, 1])
}

/// The offset of a system start code (`00 00 01` then `0xB9..=0xFF`), which no video ES contains.
fn find_system_code(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w[..3] == [0, 0, 1] && w[3] >= 0xB9)
}

/// How many trailing bytes could begin a start code (`00`, `00 00`, `00 00 01`).
fn trailing_prefix(b: &[u8]) -> usize {
    const PREFIXES: [&[u8]; 3] = [&[0, 0, 1], &[0, 0], &[0]];
    PREFIXES
        .iter()
        .find(|t| b.ends_with(t))
        .map_or(0, |t| t.len())
}

fn pts_of(b: &[u8]) -> Option<u64> {
    let &[a, b, c, d, e] = b.get(..5)? else {
        return None;
    };
    let v = |x: u8| u64::from(x);
    Some((v(a >> 1) & 7) << 30 | v(b) << 22 | v(c >> 1) << 15 | v(d) << 7 | v(e >> 1))
}

/// The (stream_type, stream_id) entries of a PSM body (the bytes after its length field).
fn parse_psm(b: &[u8]) -> Option<Vec<(u8, u8)>> {
    let u16_at = |i: usize| {
        b.get(i..i + 2)
            .map(|s| usize::from(s[0]) << 8 | usize::from(s[1]))
    };
    let info = u16_at(2)?;
    let mut i = 6 + info;
    let end = i + u16_at(4 + info)?;
    if end > b.len() {
        return None;
    }
    let mut entries = Vec::new();
    while i + 4 <= end {
        entries.push((b[i], b[i + 1]));
        i += 4 + u16_at(i + 2)?;
    }
    Some(entries)
}

/// The codec a NAL header proves: an H.265 VPS/SPS/PPS/AUD of layer 0, or an H.264 SPS or AUD.
fn sniff(h: &[u8]) -> Option<VideoCodec> {
    let (&b0, &b1) = (h.first()?, h.get(1)?);
    if b0 & 0x81 == 0 && (32..=35).contains(&(b0 >> 1)) && b1 == 1 {
        Some(VideoCodec::H265)
    } else if (b0 & 0x9F == 7 && b0 & 0x60 != 0) || (b0 == 9 && b1 & 0x1F == 0x10) {
        Some(VideoCodec::H264)
    } else {
        None
    }
}

/// The property bits of the NAL unit whose header starts `h`.
fn classify(codec: VideoCodec, h: &[u8]) -> u8 {
    use VideoCodec::{H264, H265};
    let Some(&b0) = h.first().filter(|b| *b & 0x80 == 0) else {
        return 0;
    };
    let (t, first) = match codec {
        H264 => (b0 & 0x1F, h.get(1)),
        H265 => (b0 >> 1, h.get(2)),
        VideoCodec::Unknown => return 0,
    };
    let bits = match (codec, t) {
        (H264, 5) | (H265, 16..=21) => VCL | KEY,
        (H264, 1..=4) | (H265, 0..=31) => VCL,
        (H265, 32) => START | VPS,
        (H264, 7) | (H265, 33) => START | SPS,
        (H264, 8) | (H265, 34) => START | PPS,
        (H264, 6 | 9 | 14..=18) | (H265, 35 | 39 | 41..=44 | 48..=55) => START,
        _ => 0,
    };
    // first_mb_in_slice == 0 (ue(v) "1") or first_slice_segment_in_pic_flag.
    let first = bits & VCL != 0 && first.is_some_and(|b| b & 0x80 != 0);
    bits | if first { FIRST } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            (self.0 >> 33) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Annex B bytes, PTS, keyframe.
    type Frame = (Vec<u8>, u64, bool);

    #[rustfmt::skip]
    const PACK: [u8; 14] = [0, 0, 1, 0xBA, 0x44, 0, 4, 0, 4, 1, 0x01, 0x89, 0xC3, 0xF8];
    #[rustfmt::skip]
    const SYS: [u8; 18] = [0, 0, 1, 0xBB, 0, 12, 0x80, 1, 1, 4, 0xE1, 0xFF, 0xE0, 0xE0, 0x80, 0xC0, 0xC0, 8];

    /// A PSM: video (`video_type`) on 0xE0, G.711A on 0xC0, a CRC that is not checked.
    fn psm(video_type: u8) -> Vec<u8> {
        #[rustfmt::skip]
        let b = [0, 0, 1, 0xBC, 0, 18, 0xE0, 0xFF, 0, 0, 0, 8, video_type, 0xE0, 0, 0, 0x90, 0xC0, 0, 0];
        [&b[..], &[1, 2, 3, 4]].concat()
    }

    fn pes(id: u8, pts: Option<u64>, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x80, 0, 0];
        if let Some(p) = pts {
            let b = |s: u32| (p >> s) as u8;
            h = vec![0x80, 0x80, 5, 0x21 | (b(29) & 0x0E), b(22)];
            h.extend([b(14) | 1, b(7), b(0) << 1 | 1]);
        }
        let len = h.len() + payload.len();
        [&[0, 0, 1, id, (len >> 8) as u8, len as u8], &h[..], payload].concat()
    }

    fn nal(four: bool, hdr: &[u8], n: usize, seed: usize) -> Vec<u8> {
        let body: Vec<u8> = (0..n)
            .map(|i| ((i * 7 + seed * 13) % 250 + 1) as u8)
            .collect();
        [&[0, 0, 0, 1][usize::from(!four)..], hdr, &body].concat()
    }

    /// Keyframes every 5 with parameter sets; two slices a frame.
    fn frames(h265: bool, n: usize) -> Vec<Frame> {
        let mut v = Vec::new();
        for i in 0..n {
            let key = i % 5 == 0;
            let (slice, params): (&[u8], &[&[u8]]) = match (h265, key) {
                (false, true) => (&[0x65], &[&[0x67, 0x42], &[0x68, 0xCE]]),
                (false, false) => (&[0x41], &[]),
                // IDR_W_RADL first, then CRA, with VPS; TRAIL_R.
                (true, true) => (
                    if i == 0 { &[0x26, 1] } else { &[0x2A, 1] },
                    &[&[0x40, 1], &[0x42, 1], &[0x44, 1]],
                ),
                (true, false) => (&[0x02, 1], &[]),
            };
            let mut au: Vec<u8> = params.iter().flat_map(|h| nal(true, h, 20, i)).collect();
            // The first slice of the picture (top bit set), then one that is not.
            au.extend(nal(true, &[slice, &[0x9A]].concat(), 60, i));
            au.extend(nal(false, &[slice, &[0x5A]].concat(), 40, i + 1));
            v.push((au, 90_000 + 3600 * i as u64, key));
        }
        v
    }

    /// A pack per frame, the PSM with keyframes, each frame over three PES cut inside a NAL and inside
    /// the second slice's start code, audio and padding in between. `repeat_pts`: PTS on every PES.
    fn stream(frames: &[Frame], h265: bool, repeat_pts: bool) -> Vec<u8> {
        let mut s = Vec::new();
        for (i, (au, pts, key)) in frames.iter().enumerate() {
            s.extend(PACK);
            if i == 0 {
                s.extend(SYS);
            }
            if *key {
                s.extend(psm(if h265 { 0x24 } else { 0x1B }));
            }
            let sc2 = au.windows(3).rposition(|w| w == [0, 0, 1]).unwrap();
            let cuts = [0, au.len() / 3, sc2 + 2, au.len()];
            for (j, w) in cuts.windows(2).enumerate() {
                let p = (j == 0 || repeat_pts).then_some(*pts);
                s.extend(pes(0xE0, p, &au[w[0]..w[1]]));
                if j == 0 {
                    s.extend(pes(0xC0, Some(*pts), &[0xD5; 160]));
                    s.extend(pes(0xBE, None, &[0xFF; 10]));
                }
            }
        }
        s
    }

    /// Pushes `s` in chunks of `sizes()` bytes (1 at least), checking the memory bound, then finishes.
    fn demux(s: &[u8], mut sizes: impl FnMut() -> usize) -> (Vec<PsUnit>, PsDemuxer) {
        let (mut d, mut units, mut rest) = (PsDemuxer::new(), Vec::new(), s);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(sizes().clamp(1, rest.len()));
            units.extend(d.push(chunk));
            assert!(d.au.len() <= MAX_UNIT_BYTES && d.inp.len() <= 70_000 + chunk.len());
            rest = tail;
        }
        units.extend(d.finish());
        (units, d)
    }

    /// Whole, byte by byte, and in random chunks of 1 to 300 bytes.
    fn chunkings(s: &[u8]) -> impl Iterator<Item = (Vec<PsUnit>, PsDemuxer)> + '_ {
        (0..5).map(move |k| {
            let mut rng = Lcg(k);
            demux(s, move || {
                [usize::MAX, 1][..]
                    .get(k as usize)
                    .copied()
                    .unwrap_or(1 + rng.next() % 300)
            })
        })
    }

    fn check(units: &[PsUnit], want: &[&Frame], codec: VideoCodec) {
        let got: Vec<_> = units
            .iter()
            .map(|u| (&u.data[..], u.pts_90k, u.keyframe, u.codec))
            .collect();
        let want: Vec<_> = want
            .iter()
            .map(|(a, p, k)| (&a[..], Some(*p), *k, codec))
            .collect();
        assert_eq!(got, want);
        for u in units {
            let (k, h265) = (u.keyframe, codec == VideoCodec::H265);
            assert_eq!((u.has_sps, u.has_pps, u.has_vps), (k, k, k && h265));
        }
    }

    #[test]
    fn hand_built_h264_and_h265_in_any_chunking() {
        for (h265, codec) in [(false, VideoCodec::H264), (true, VideoCodec::H265)] {
            let fr = frames(h265, 12);
            for repeat_pts in [false, true] {
                for (units, d) in chunkings(&stream(&fr, h265, repeat_pts)) {
                    check(&units, &fr.iter().collect::<Vec<_>>(), codec);
                    let st = d.stats();
                    assert_eq!(
                        [st.units, st.keyframes, st.resyncs, st.dropped_bytes],
                        [12, 3, 0, 0]
                    );
                    assert_eq!((st.audio_packets, d.stream_type(0xC0)), (12, Some(0x90)));
                    assert_eq!(d.last_error(), None);
                }
            }
        }
    }

    #[test]
    fn garbage_truncation_and_random_bytes_resync() {
        let fr = frames(false, 12);
        let one = |f: &Frame| stream(std::slice::from_ref(f), false, false);
        let mut rng = Lcg(99);
        let mut s = rng.bytes(500);
        for (i, f) in fr.iter().enumerate() {
            let mut f = one(f);
            if i == 3 {
                // Frame 3's second video PES loses its last 30 bytes, its length unchanged.
                let video = |(_, w): &(usize, &[u8])| *w == [0, 0, 1, 0xE0];
                let at = f.windows(4).enumerate().filter(video).nth(1).unwrap().0;
                let end = at + 6 + usize::from(f[at + 4]) * 256 + usize::from(f[at + 5]);
                f.drain(end - 30..end);
            }
            s.extend(f);
            if i == 6 {
                s.extend(rng.bytes(300));
            }
        }
        // Frame 3 is cut short; frame 6 is in progress when the garbage comes.
        let want: Vec<_> = fr
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 6)
            .map(|f| f.1)
            .collect();
        for (units, d) in chunkings(&s) {
            check(&units, &want, VideoCodec::H264);
            let st = d.stats();
            assert_eq!((st.resyncs, st.dropped_units), (3, 2), "{st:?}");
            assert!(st.dropped_bytes >= 800);
            assert_eq!(d.last_error().map(|e| e.kind), Some(Damage::NoStartCode));
        }
        let cut = [&one(&fr[3])[..one(&fr[3]).len() - 30], &one(&fr[4])].concat();
        for (_, d) in chunkings(&cut) {
            let e = d.last_error().unwrap();
            assert_eq!(
                (e.kind, e.id, d.stats().dropped_units),
                (Damage::Truncated, 0xE0, 1)
            );
        }

        // Random bytes alone, and the stream with bytes changed, cut or inserted: no panic, bounded.
        let mut rng = Lcg(5);
        demux(&rng.bytes(200_000), || 1 + rng.next() % 2000);
        let whole = stream(&fr, false, false);
        for round in 0..300 {
            let mut m = whole.clone();
            for _ in 0..1 + rng.next() % 8 {
                let (at, n) = (rng.next() % m.len(), 1 + rng.next() % 40);
                match round % 3 {
                    0 => m[at] = rng.next() as u8,
                    1 => drop(m.drain(at..(at + n).min(m.len()))),
                    _ => drop(m.splice(at..at, rng.bytes(n))),
                }
            }
            let (units, _) = demux(&m, || 1 + rng.next() % 700);
            assert!(
                units
                    .iter()
                    .all(|u| !u.data.is_empty() && u.data.len() <= MAX_UNIT_BYTES)
            );
        }
    }

    #[test]
    fn oversize_unit_is_dropped_and_later_frames_come_out() {
        let fr = frames(false, 6);
        let unbounded = [0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        let mut s = [&PACK[..], &psm(0x1B), &unbounded].concat();
        s.extend(nal(true, &[0x65, 0x88], MAX_UNIT_BYTES + 1000, 0));
        s.extend(stream(&fr, false, false));
        let (units, d) = demux(&s, || 1 << 20);
        assert_eq!(d.last_error().map(|e| e.kind), Some(Damage::TooLarge));
        check(&units, &fr.iter().collect::<Vec<_>>(), VideoCodec::H264);
    }

    /// Runs `tool` (`{out}` in `cmd` is the file), demuxes its file in RTP-sized chunks and checks:
    /// 50 frames at 25 fps, keyframes 0 and 25 with parameter sets, PTS 3600 apart where coded (ffmpeg
    /// puts several small frames in one 2048-byte PES, with the PTS of the first that starts in it).
    fn real(tool: &str, cmd: &str, codec: VideoCodec, min_pts: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ps");
        let args = cmd
            .split(' ')
            .map(|a| a.replace("{out}", path.to_str().unwrap()));
        let out = match std::process::Command::new(tool).args(args).output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return eprintln!("SKIPPED: {tool} is not installed");
            }
            r => r.unwrap(),
        };
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rng = Lcg(3);
        let (units, d) = demux(&std::fs::read(&path).unwrap(), || 1 + rng.next() % 1400);
        assert_eq!((d.codec(), d.stats().resyncs, units.len()), (codec, 0, 50));
        let keys: Vec<_> = (0..50).filter(|i| units[*i].keyframe).collect();
        assert_eq!(keys, [0, 25]);
        let h265 = codec == VideoCodec::H265;
        assert!(
            keys.iter()
                .all(|k| units[*k].has_sps && units[*k].has_pps && units[*k].has_vps == h265)
        );
        let p0 = units[0].pts_90k.unwrap();
        let coded: Vec<_> = (0..50)
            .filter_map(|i| Some((i, units[i].pts_90k?)))
            .collect();
        assert!(coded.len() >= min_pts, "{} PTS", coded.len());
        assert!(
            coded.iter().all(|(i, p)| *p == p0 + 3600 * *i as u64),
            "{coded:?}"
        );
    }

    #[test]
    fn gstreamer_mpegpsmux_h264() {
        let caps = "video/x-raw,width=320,height=240,framerate=25/1";
        let enc = "x264enc key-int-max=25 bframes=0 ! h264parse ! mpegpsmux";
        let cmd =
            format!("-q videotestsrc num-buffers=50 ! {caps} ! {enc} ! filesink location={{out}}");
        real("gst-launch-1.0", &cmd, VideoCodec::H264, 50);
    }

    const FFMPEG: &str = "-v error -f lavfi -i testsrc=size=320x240:rate=25 -frames:v 50 -c:v";

    #[test]
    fn ffmpeg_vob_h264() {
        let cmd = format!("{FFMPEG} libx264 -g 25 -bf 0 -f vob {{out}}");
        real("ffmpeg", &cmd, VideoCodec::H264, 5);
    }

    /// ffmpeg's `vob` (MPEG-2 PS) muxer takes HEVC, as stream 0xE0 with no PSM: the codec is
    /// recognised from the VPS.
    #[test]
    fn ffmpeg_vob_h265() {
        let x265 = "keyint=25:bframes=0:log-level=error";
        let cmd = format!("{FFMPEG} libx265 -x265-params {x265} -f vob {{out}}");
        real("ffmpeg", &cmd, VideoCodec::H265, 5);
    }
}
