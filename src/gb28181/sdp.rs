//! SDP of GB/T 28181 INVITEs: the platform's offer and the device's answer.
