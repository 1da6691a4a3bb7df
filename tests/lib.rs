//! Helpers for the integration tests: network namespaces and veths that remove themselves,
//! the real `l2announcer` binary run inside them, and the client tools (arping, ndisc6, ping).
//!
//! Every test needs root (namespaces, XDP). Names carry the process id and a counter so that
//! tests run in parallel, and every object is removed on drop, also when a test fails.

use std::{
    fs,
    net::IpAddr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// Panics with a clear message unless running as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests need root (network namespaces, XDP): run `cargo xtask test` as root");
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `<prefix><pid><n>` (interface names are
/// limited to 15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A network namespace, deleted on drop (which also deletes the interfaces in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = unique("l2t");
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// `ip netns exec <ns> args...`, output captured, not checked.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {args:?} in {}: {e}", self.name))
    }

    /// Like [`Netns::run`] but panics on failure.
    pub fn sh(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The MAC of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> String {
        let path = format!("/sys/class/net/{ifname}/address");
        let out = self.sh(&["cat", &path]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair between two namespaces, with addresses, both ends up.
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            ns.sh(&["ip", "addr", "add", addr, "dev", ifname, "nodad"]);
        }
        ns.sh(&["ip", "link", "set", ifname, "up"]);
    }
}

/// The l2announcer binary: `L2ANNOUNCER_BIN`, or the one cargo built next to this test.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("L2ANNOUNCER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = dir.join("l2announcer");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p l2announcer` (cargo xtask test does) or set L2ANNOUNCER_BIN",
        bin.display()
    );
    bin
}

/// A running `l2announcer` inside a namespace, killed on drop.
pub struct Agent {
    pub child: Child,
    ns: String,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `l2announcer <args>` in `ns` and waits until it reports ready.
    pub fn start(ns: &Netns, args: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique("l2announcer-")));
        let file = fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(binary())
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn l2announcer");
        let mut agent = Agent {
            child,
            ns: ns.name.clone(),
            log,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("l2announcer exited with {status}:\n{}", self.log_text());
            }
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .arg(binary())
                .args(["status", "-o", "json"])
                .output();
            if let Ok(out) = out {
                if out.status.success() {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                        if v["ready"] == true {
                            return;
                        }
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("l2announcer not ready in 20s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `l2announcer status -o json` of this agent.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(binary())
            .args(["status", "-o", "json"])
            .output()
            .expect("status");
        assert!(out.status.success(), "status failed: {out:?}");
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Sends a signal to the agent's process (the child is `ip netns exec`, which execs it).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill with a pid we own.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn stop(self) -> bool {
        self.stop_with_log().0
    }

    /// SIGTERM and wait; whether it exited successfully, and its log.
    pub fn stop_with_log(mut self) -> (bool, String) {
        self.signal(libc::SIGTERM);
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        (ok, self.log_text())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- l2announcer log ---\n{}", self.log_text());
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// Asks for `ip` with arping from `ns` on `ifname`: the MACs that answered.
pub fn arping(ns: &Netns, ifname: &str, ip: &str, count: u32) -> Vec<String> {
    let out = ns.run(&[
        "arping",
        "-c",
        &count.to_string(),
        "-w",
        &(count + 1).to_string(),
        "-I",
        ifname,
        ip,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut macs: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(" from ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|m| m.to_lowercase())
        .collect();
    macs.dedup();
    macs
}

/// Asks for `ip` with ndisc6 from `ns` on `ifname`: the target link-layer address, if any.
pub fn ndisc6(ns: &Netns, ifname: &str, ip: &str) -> Option<String> {
    let out = ns.run(&["ndisc6", "-1", "-r", "2", "-w", "1000", ip, ifname]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Target link-layer address: "))
        .map(|m| m.trim().to_lowercase())
}

/// Lets the client's own kernel resolve `ip` (a ping it sends), then reads its neighbour
/// table: the MAC it resolved, if any.
pub fn kernel_resolves(ns: &Netns, ifname: &str, ip: IpAddr) -> Option<String> {
    let _ = ns.run(&["ip", "neigh", "flush", "dev", ifname]);
    let _ = ns.run(&["ping", "-c", "1", "-W", "1", "-I", ifname, &ip.to_string()]);
    let out = ns.run(&["ip", "neigh", "show", &ip.to_string(), "dev", ifname]);
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|m| m.to_lowercase())
}

/// Holds the pass-everything XDP program on an interface in a namespace, in native mode,
/// so that native `XDP_TX` from the veth's other end is delivered. Detached on drop.
pub struct PeerXdp {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PeerXdp {
    pub fn attach(ns: &Netns, ifname: &str) -> Self {
        let path = ns.path();
        let ifname = ifname.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            // Enter the namespace on this thread only; interface indexes are per namespace.
            let f = fs::File::open(&path).expect("netns file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an fd we hold; it only affects this thread.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                panic!("setns: {}", std::io::Error::last_os_error());
            }
            // Not /sys/class/net: sysfs shows the namespace it was mounted in, not this thread's.
            let c_name = std::ffi::CString::new(ifname.clone()).expect("interface name");
            // SAFETY: a valid C string; the call only reads it.
            let index = match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
                0 => None,
                i => Some(i),
            };
            let mut dp = l2announcer::dataplane::Dataplane::load(Duration::from_secs(5))
                .expect("load XDP object");
            let result = index
                .ok_or_else(|| format!("no interface {ifname}"))
                .and_then(|i| {
                    dp.attach_pass(i, aya::programs::XdpMode::Driver)
                        .map_err(|e| e.to_string())
                });
            let failed = result.is_err();
            ready_tx.send(result).expect("ready");
            if !failed {
                let _ = stop_rx.recv();
            }
            drop(dp);
        });
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("attaching the pass program: {e}"),
            Err(_) => panic!("pass program thread died"),
        }
        PeerXdp {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for PeerXdp {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on a thread that has entered `ns` (sockets it opens live in that namespace).
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = fs::File::open(&path).expect("netns file");
        // SAFETY: setns on an fd we hold; it only affects this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .expect("netns thread")
}

/// The ifindex of `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> u32 {
    let c_name = std::ffi::CString::new(ifname).expect("interface name");
    // SAFETY: a valid C string; the call only reads it.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(index, 0, "no interface {ifname}");
    index
}

/// Sends one raw Ethernet frame out of `ifname` in `ns`.
pub fn send_frame(ns: &Netns, ifname: &str, frame: Vec<u8>) {
    let ifname = ifname.to_owned();
    in_netns(ns, move || {
        let socket = l2announcer::announce::PacketSocket::new().expect("AF_PACKET socket");
        socket.send(ifindex(&ifname), &frame).expect("send");
    });
}

/// A continuous ARP prober: `arping` sending a request every 50 ms from `ns`, with every reply
/// timestamped. Used to measure takeovers and to check that one VIP never has two answerers.
pub struct ArpProbe {
    child: Child,
    replies: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl ArpProbe {
    pub fn start(ns: &Netns, ifname: &str, ip: &str, seconds: u32) -> Self {
        let mut child = Command::new("ip")
            // Line-buffered: each reply is read (and timestamped) when it arrives.
            .args([
                "netns", "exec", &ns.name, "stdbuf", "-oL", "arping", "-W", "0.05", "-w",
            ])
            .arg(seconds.to_string())
            .args(["-I", ifname, ip])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("arping");
        let stdout = child.stdout.take().expect("stdout");
        let replies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = replies.clone();
        let reader = thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mac = line
                    .split(" from ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(|m| m.to_lowercase());
                if let Some(mac) = mac {
                    sink.lock().unwrap().push((Instant::now(), mac));
                }
            }
        });
        ArpProbe {
            child,
            replies,
            reader: Some(reader),
        }
    }

    /// Starts a probe and waits until the address has answered it once (so that what follows
    /// is seen from its first moment).
    pub fn start_answered(ns: &Netns, ifname: &str, ip: &str, seconds: u32) -> Self {
        let probe = Self::start(ns, ifname, ip, seconds);
        assert!(
            eventually(Duration::from_secs(5), || !probe.replies().is_empty()),
            "{ip} answered the probe"
        );
        probe
    }

    /// The replies so far.
    pub fn replies(&self) -> Vec<(Instant, String)> {
        self.replies.lock().unwrap().clone()
    }

    /// The first reply at or after `since` from a MAC other than `old`.
    pub fn first_other(&self, since: Instant, old: &str) -> Option<(Instant, String)> {
        self.replies()
            .into_iter()
            .find(|(t, m)| *t >= since && m != old)
    }
}

impl Drop for ArpProbe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The MACs in the order they answered, consecutive repeats folded: `[a, b]` is one
/// handover, `[a, b, a]` or longer means two nodes answered at the same time.
pub fn answer_sequence(replies: &[(Instant, String)]) -> Vec<String> {
    let mut seq: Vec<String> = Vec::new();
    for (_, mac) in replies {
        if seq.last() != Some(mac) {
            seq.push(mac.clone());
        }
    }
    seq
}

/// A veth from `ns` (named `ifname`, with `addr`) to `bridge` in the `switch` namespace: how the
/// labs put nodes, clients and the API server on one L2 segment.
pub fn plug(switch: &Netns, bridge: &str, ns: &Netns, ifname: &str, addr: &str) {
    let peer = unique("p");
    sh(&[
        "ip",
        "link",
        "add",
        ifname,
        "netns",
        &ns.name,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
        "netns",
        &switch.name,
    ]);
    switch.sh(&["ip", "link", "set", &peer, "master", bridge]);
    switch.sh(&["ip", "link", "set", &peer, "up"]);
    ns.sh(&["ip", "addr", "add", addr, "dev", ifname]);
    ns.sh(&["ip", "link", "set", ifname, "up"]);
}

/// kubectl with one kubeconfig, run inside a namespace (where the API server listens on a
/// bridge) or, without one, on this host.
pub struct Kubectl {
    pub netns: Option<String>,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl with `args` and `stdin`; its output, or its error text.
    pub fn try_run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use std::io::Write as _;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "kubectl"]);
                c
            }
            None => Command::new("kubectl"),
        };
        // A cache beside the kubeconfig: parallel tests never share discovery caches.
        let cache = self
            .kubeconfig
            .parent()
            .map(|d| d.join("kubectl-cache"))
            .unwrap_or_else(std::env::temp_dir);
        let mut child = cmd
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl (is it installed?)");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write to kubectl");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Like [`Kubectl::try_run`], panicking on failure.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.try_run(args, stdin)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// `kubectl apply -f -` of a YAML or JSON stream.
    pub fn apply(&self, yaml: &str) {
        self.run(&["apply", "-f", "-"], Some(yaml));
    }
}

/// The YAML documents of a text, as JSON values (empty documents dropped); `what` names the
/// text in a failure.
pub fn yaml_docs(text: &str, what: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            <serde_json::Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The YAML documents of a file, as JSON values (empty documents dropped).
pub fn file_docs(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_docs(&text, &path.display().to_string())
}

/// A minimal HTTP/1.0 GET (the agents' and the operator's /metrics, /readyz): (status code,
/// body), or `None` if it cannot connect or the answer is not HTTP.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The value of a metric line `name{labels} value` (`name value` without labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (zero if it is gone).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at `state`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state.
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}
