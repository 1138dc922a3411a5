//! The TLS crypto provider shared by https delivery (`delivery::tls`) and Kafka connections
//! (`kafka::tls`): rustls with graviola, which is pure Rust and assembly, so the static musl
//! binary still builds without a C compiler (ring and aws-lc-rs, rustls's usual providers,
//! both compile C). A leaf: it names no other module of the crate.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider for every rustls configuration bigpipe builds. Check [`cpu_supported`] first:
/// graviola panics on a CPU without the features it needs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls_graviola::default_provider())
}

/// Whether this CPU has the features graviola requires; it panics without them, so they
/// are checked first.
pub fn cpu_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("adx")
            && std::arch::is_x86_feature_detected!("avx")
            && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("sha2")
            && std::arch::is_aarch64_feature_detected!("pmull")
            && std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
