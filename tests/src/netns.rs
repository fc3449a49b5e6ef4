//! Test hosts in network namespaces: each host is its own namespace with
//! its own address, joined by a veth pair to a bridge in the root
//! namespace, on a /24 of 198.18.0.0/15 (reserved for benchmarking) with no
//! route out. Partitions take a host's link down. Everything is removed on
//! drop, also when a test panics; names are unique per run.

use std::process::Command;

/// A set of namespaced hosts.
#[derive(Debug)]
pub struct NetFleet {
    prefix: String,
    pub bridge: String,
    /// The /24 in use: 198.18.SUBNET.0/24.
    pub subnet: u8,
    pub hosts: Vec<NsHost>,
    lock: std::path::PathBuf,
}

/// One namespaced host.
#[derive(Debug, Clone)]
pub struct NsHost {
    pub netns: String,
    /// The host side of its veth pair (down = partitioned).
    pub veth: String,
    pub ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetFleet {
    /// Creates `n` namespaced hosts, or says why it cannot.
    pub fn create(n: usize) -> Result<NetFleet, String> {
        // A /24 of our own: claimed with a lock file so that tests running
        // at once never share addresses.
        let mut claimed = None;
        for _ in 0..64 {
            let subnet: u8 = 1 + rand::random::<u8>() % 250;
            let lock = std::env::temp_dir().join(format!("cutover-netns-198.18.{subnet}.lock"));
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
                .is_ok()
            {
                claimed = Some((subnet, lock));
                break;
            }
        }
        let (subnet, lock) = claimed.ok_or("no free test subnet")?;
        let prefix = format!("cx{:04x}", rand::random::<u16>());
        let mut fleet = NetFleet {
            bridge: format!("{prefix}br"),
            prefix,
            subnet,
            hosts: Vec::new(),
            lock,
        };
        ip(&["link", "add", &fleet.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("198.18.{subnet}.1/24"),
            "dev",
            &fleet.bridge,
        ])?;
        ip(&["link", "set", &fleet.bridge, "up"])?;
        for i in 0..n {
            let netns = format!("{}h{i}", fleet.prefix);
            let veth = format!("{}v{i}", fleet.prefix);
            let peer = format!("{}p{i}", fleet.prefix);
            let addr = format!("198.18.{subnet}.{}", 10 + i);
            ip(&["netns", "add", &netns])?;
            fleet.hosts.push(NsHost {
                netns: netns.clone(),
                veth: veth.clone(),
                ip: addr.clone(),
            });
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &netns])?;
            ip(&["link", "set", &veth, "master", &fleet.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &peer,
            ])?;
            ip(&["-n", &netns, "link", "set", &peer, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(fleet)
    }

    /// The root namespace's address on the bridge (where the coordinator
    /// listens).
    pub fn gateway(&self) -> String {
        format!("198.18.{}.1", self.subnet)
    }

    /// Cuts host `i` off the network.
    pub fn partition(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].veth, "down"]).expect("partitioning");
    }

    /// Reconnects host `i`.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].veth, "up"]).expect("healing");
    }
}

impl Drop for NetFleet {
    fn drop(&mut self) {
        for h in &self.hosts {
            // Deleting the namespace also removes its end of the veth pair.
            let _ = ip(&["netns", "del", &h.netns]);
            let _ = ip(&["link", "del", &h.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_file(&self.lock);
    }
}
