//! What the agent tells the coordinator about its host: hostname, CPUs,
//! memory, OS and kernel (sysinfo), and the boot id.

use sysinfo::System;

/// Host facts as reported in `Hello`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub boot_id: String,
}

/// Reads the facts of this host.
pub fn collect() -> Facts {
    let mut sys = System::new();
    sys.refresh_memory();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    Facts {
        hostname: System::host_name().unwrap_or_default(),
        cpus,
        memory_bytes: sys.total_memory(),
        os: System::long_os_version().unwrap_or_else(|| System::name().unwrap_or_default()),
        kernel: System::kernel_version().unwrap_or_default(),
        arch: std::env::consts::ARCH.into(),
        boot_id: boot_id(),
    }
}

/// `/proc/sys/kernel/random/boot_id`: changes on every boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn facts_describe_this_machine() {
        let f = super::collect();
        assert!(f.cpus >= 1);
        assert!(f.memory_bytes > 0);
        assert!(!f.arch.is_empty());
        assert!(!f.boot_id.is_empty(), "Linux exposes a boot id");
    }
}
