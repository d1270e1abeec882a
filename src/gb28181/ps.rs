//! MPEG-PS (ISO/IEC 13818-1 program stream) demuxing for GB/T 28181 media: PS packs carried in RTP
//! become the access units the keyframe gate and decoders take.
