//! `authorized_keys` key options: sshd(8) AUTHORIZED_KEYS FILE FORMAT.
//!
//! Parsing follows OpenSSH's `sshauthopt_parse` (auth-options.c): keywords are
//! case-insensitive, values are double-quoted with `\"` as the only escape, flags apply in order
//! (so `restrict,pty` allows a pty but `pty,restrict` does not), and an unknown option makes
//! the whole line invalid. The effective-permission methods follow the places in sshd that
//! enforce each option; each says which. Enforcement itself is the daemon's job.

use std::net::IpAddr;

use super::pattern;

/// sshd's `NI_MAXHOST`: longest host name in `permitopen`/`permitlisten`.
const MAX_HOST_LEN: usize = 1024;
/// `SSH_TUNID_MAX`: largest tun unit number `tunnel=` accepts.
const MAX_TUN_UNIT: u32 = 0x7fff_fffd;

/// An option string sshd would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// Not an option sshd knows (sshd rejects the line).
    #[error("unknown key option {0:?}")]
    Unknown(String),
    /// A flag option given a value.
    #[error("option {0:?} takes no value")]
    UnexpectedValue(String),
    /// A value option given without `="…"`.
    #[error("option {0} needs a value")]
    MissingValue(&'static str),
    /// The value does not start with `"`.
    #[error("option {0}: missing start quote")]
    MissingStartQuote(&'static str),
    /// The value's closing `"` is missing.
    #[error("option {0}: missing end quote")]
    MissingEndQuote(&'static str),
    /// An option sshd allows once appears twice.
    #[error("multiple \"{0}\" clauses")]
    Duplicate(&'static str),
    /// A value sshd would not accept.
    #[error("invalid {option} value {value:?}: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The option list ends with a comma.
    #[error("unexpected end of options")]
    TrailingComma,
}

/// A port in `permitopen`/`permitlisten`: a number, or `*` for any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// `*`.
    Any,
    /// A port number, never 0.
    Port(u16),
}

impl PortSpec {
    /// Whether `port` is allowed by this spec.
    #[must_use]
    pub fn matches(self, port: u16) -> bool {
        match self {
            PortSpec::Any => true,
            PortSpec::Port(p) => p == port,
        }
    }
}

/// One `permitopen="host:port"`: a literal host (brackets of an IPv6 address removed) or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitOpen {
    /// The host, compared literally; `*` allows any host.
    pub host: String,
    /// The port.
    pub port: PortSpec,
}

/// One `permitlisten="[host:]port"`: a host pattern (`*` when only a port was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitListen {
    /// Pattern over the requested listen address (ssh_config(5) PATTERNS, no lists).
    pub host: String,
    /// The port.
    pub port: PortSpec,
}

/// The `tunnel="n"` option: the tun device forced for this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelDevice {
    /// `tunnel="any"` (OpenSSH's `SSH_TUNID_ANY`).
    Any,
    /// A unit number.
    Unit(u32),
}

/// An `expiry-time="timespec"`: `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`, in the system time zone
/// unless suffixed `Z` (or `UTC`), as OpenSSH's `parse_absolute_time` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryTime {
    /// Seconds since the epoch, reading the fields as UTC.
    seconds: i64,
    utc: bool,
}

impl ExpiryTime {
    /// Parse a timespec.
    ///
    /// # Errors
    /// A malformed time, or one not after 1970-01-01T00:00:00Z.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let bytes = s.as_bytes();
        let (digits, utc) = if bytes.len() > 1 && (s.ends_with('Z') || s.ends_with('z')) {
            (bytes.get(..bytes.len() - 1), true)
        } else if bytes.len() > 3
            && bytes
                .get(bytes.len() - 3..)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"UTC"))
        {
            (bytes.get(..bytes.len() - 3), true)
        } else {
            (Some(bytes), false)
        };
        let digits = digits.ok_or("invalid time")?;
        if !matches!(digits.len(), 8 | 12 | 14) || !digits.iter().all(u8::is_ascii_digit) {
            return Err("expected YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]");
        }
        let field = |at: usize, len: usize| -> i64 {
            digits
                .get(at..at + len)
                .unwrap_or_default()
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
        };
        let (year, month, day) = (field(0, 4), field(4, 2), field(6, 2));
        let (hour, minute, second) = (field(8, 2), field(10, 2), field(12, 2));
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err("field out of range");
        }
        // Like timegm/mktime, a day past the end of its month rolls into the next.
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        if seconds <= 0 {
            return Err("time is not after 1970");
        }
        Ok(Self { seconds, utc })
    }

    /// Whether the time was given in UTC (`Z`/`UTC` suffix) rather than local time.
    #[must_use]
    pub fn is_utc(self) -> bool {
        self.utc
    }

    /// The time as seconds since the epoch, given the local zone's offset east of UTC in
    /// seconds (ignored for UTC times). sshd uses the system zone; `proto` cannot look it up.
    #[must_use]
    pub fn unix_time(self, utc_offset_seconds: i32) -> i64 {
        if self.utc {
            self.seconds
        } else {
            self.seconds - i64::from(utc_offset_seconds)
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The options of one `authorized_keys` line, as sshd would apply them.
///
/// `Default` is a line with no options: everything permitted, nothing forced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOptions {
    restricted: bool,
    port_forwarding: bool,
    agent_forwarding: bool,
    x11_forwarding: bool,
    pty: bool,
    user_rc: bool,
    cert_authority: bool,
    touch_required: bool,
    verify_required: bool,
    command: Option<String>,
    principals: Option<Vec<String>>,
    from: Option<String>,
    expiry: Vec<ExpiryTime>,
    environment: Vec<(String, String)>,
    permit_open: Vec<PermitOpen>,
    permit_listen: Vec<PermitListen>,
    tunnel: Option<TunnelDevice>,
}

impl Default for KeyOptions {
    fn default() -> Self {
        Self {
            restricted: false,
            port_forwarding: true,
            agent_forwarding: true,
            x11_forwarding: true,
            pty: true,
            user_rc: true,
            cert_authority: false,
            touch_required: true,
            verify_required: false,
            command: None,
            principals: None,
            from: None,
            expiry: Vec::new(),
            environment: Vec::new(),
            permit_open: Vec::new(),
            permit_listen: Vec::new(),
            tunnel: None,
        }
    }
}

/// Options that take a `="value"`.
const VALUE_OPTIONS: [&str; 8] = [
    "command",
    "principals",
    "from",
    "expiry-time",
    "environment",
    "permitopen",
    "permitlisten",
    "tunnel",
];

impl std::str::FromStr for KeyOptions {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<Self, OptionError> {
        Self::parse(s)
    }
}

impl KeyOptions {
    /// Parse the options field of an `authorized_keys` line (comma-separated, no blanks
    /// outside double quotes).
    ///
    /// # Errors
    /// Any option or value sshd would reject; sshd then ignores the whole line.
    pub fn parse(text: &str) -> Result<Self, OptionError> {
        let mut options = Self::default();
        let mut rest = text;
        loop {
            let (name, after) = match rest.find(['=', ',']) {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            rest = match after.strip_prefix('=') {
                Some(value) => options.apply_value(name, value)?,
                None => {
                    options.apply_flag(name)?;
                    after
                }
            };
            if rest.is_empty() {
                return Ok(options);
            }
            // Anything but a comma after an option (`command="x"y`) is an unknown option.
            let next = rest
                .strip_prefix(',')
                .ok_or_else(|| OptionError::Unknown(rest.to_owned()))?;
            if next.is_empty() {
                return Err(OptionError::TrailingComma);
            }
            rest = next;
        }
    }

    fn apply_flag(&mut self, name: &str) -> Result<(), OptionError> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "restrict" => {
                self.restricted = true;
                self.port_forwarding = false;
                self.agent_forwarding = false;
                self.x11_forwarding = false;
                self.pty = false;
                self.user_rc = false;
                return Ok(());
            }
            "cert-authority" => {
                self.cert_authority = true;
                return Ok(());
            }
            _ => {}
        }
        let (allow, flag) = match lower.strip_prefix("no-") {
            Some(flag) => (false, flag),
            None => (true, lower.as_str()),
        };
        let slot = match flag {
            "port-forwarding" => &mut self.port_forwarding,
            "agent-forwarding" => &mut self.agent_forwarding,
            "x11-forwarding" => &mut self.x11_forwarding,
            "pty" => &mut self.pty,
            "user-rc" => &mut self.user_rc,
            "touch-required" => &mut self.touch_required,
            "verify-required" => &mut self.verify_required,
            _ => {
                return Err(match VALUE_OPTIONS.iter().find(|o| **o == lower) {
                    Some(option) => OptionError::MissingValue(option),
                    None => OptionError::Unknown(name.to_owned()),
                });
            }
        };
        *slot = allow;
        Ok(())
    }

    /// Apply `name="…"` where `text` starts at the opening quote; returns what follows the
    /// closing quote.
    fn apply_value<'a>(&mut self, name: &str, text: &'a str) -> Result<&'a str, OptionError> {
        let Some(&option) = VALUE_OPTIONS.iter().find(|o| o.eq_ignore_ascii_case(name)) else {
            let is_flag = Self::default().apply_flag(name).is_ok();
            return Err(if is_flag {
                OptionError::UnexpectedValue(name.to_owned())
            } else {
                OptionError::Unknown(name.to_owned())
            });
        };
        let (value, rest) = dequote(option, text)?;
        let invalid = |reason: &str| OptionError::Invalid {
            option,
            value: value.clone(),
            reason: reason.to_owned(),
        };
        match option {
            "command" => set_once(&mut self.command, "command", value.clone())?,
            "principals" => {
                let list = value.split(',').map(str::to_owned).collect();
                set_once(&mut self.principals, "principals", list)?;
            }
            "from" => {
                if let Err(e) = pattern::addr_match_list(None, &value) {
                    return Err(invalid(&e.0));
                }
                set_once(&mut self.from, "from", value.clone())?;
            }
            "expiry-time" => {
                // Several are allowed; the earliest counts (see `is_expired`).
                let t = ExpiryTime::parse(&value).map_err(invalid)?;
                self.expiry.push(t);
            }
            "environment" => {
                let (var, val) = value
                    .split_once('=')
                    .ok_or_else(|| invalid("expected NAME=value"))?;
                if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(invalid("NAME must be letters, digits and _"));
                }
                self.environment.push((var.to_owned(), val.to_owned()));
            }
            "permitopen" => {
                let (host, port) = parse_permit(&value).map_err(invalid)?;
                self.permit_open.push(PermitOpen { host, port });
            }
            "permitlisten" => {
                // A bare port means any listen address.
                let spec = if value.contains(':') {
                    value.clone()
                } else {
                    format!("*:{value}")
                };
                let (host, port) = parse_permit(&spec).map_err(invalid)?;
                self.permit_listen.push(PermitListen { host, port });
            }
            _ => {
                // "tunnel": OpenSSH's a2tun without a remote part.
                let device = if value.eq_ignore_ascii_case("any") {
                    TunnelDevice::Any
                } else {
                    match value.parse::<u32>() {
                        Ok(n) if n <= MAX_TUN_UNIT && value.bytes().all(|b| b.is_ascii_digit()) => {
                            TunnelDevice::Unit(n)
                        }
                        _ => return Err(invalid("expected a tun unit number or \"any\"")),
                    }
                };
                self.tunnel = Some(device);
            }
        }
        Ok(rest)
    }

    /// `restrict` was given (later flags may have re-enabled some things).
    #[must_use]
    pub fn is_restricted(&self) -> bool {
        self.restricted
    }

    /// TCP forwarding (`-L`, `-R`, `-D`) is allowed: not disabled by `no-port-forwarding` or
    /// `restrict`, or re-enabled by a later `port-forwarding`.
    #[must_use]
    pub fn allows_port_forwarding(&self) -> bool {
        self.port_forwarding
    }

    /// Agent forwarding is allowed (`[no-]agent-forwarding`, `restrict`).
    #[must_use]
    pub fn allows_agent_forwarding(&self) -> bool {
        self.agent_forwarding
    }

    /// X11 forwarding is allowed (`[no-]X11-forwarding`, `restrict`).
    #[must_use]
    pub fn allows_x11_forwarding(&self) -> bool {
        self.x11_forwarding
    }

    /// A pty may be allocated (`[no-]pty`, `restrict`).
    #[must_use]
    pub fn allows_pty(&self) -> bool {
        self.pty
    }

    /// `~/.ssh/rc` may run (`[no-]user-rc`, `restrict`).
    #[must_use]
    pub fn allows_user_rc(&self) -> bool {
        self.user_rc
    }

    /// Narrows these options by an OpenSSH user certificate's extensions (PROTOCOL.certkeys
    /// "Extensions"): whatever the certificate does not permit is denied, as sshd does for a
    /// certificate login. Tunnel forwarding has no extension and is left as it is.
    pub fn restrict_to_certificate(&mut self, cert: &ssh_key::Certificate) {
        let permits = |name: &str| cert.extensions().contains_key(name);
        self.port_forwarding &= permits("permit-port-forwarding");
        self.agent_forwarding &= permits("permit-agent-forwarding");
        self.x11_forwarding &= permits("permit-X11-forwarding");
        self.pty &= permits("permit-pty");
        self.user_rc &= permits("permit-user-rc");
    }

    /// The key is a CA trusted for user certificates (`cert-authority`).
    #[must_use]
    pub fn is_cert_authority(&self) -> bool {
        self.cert_authority
    }

    /// FIDO keys must prove user presence (false with `no-touch-required`).
    #[must_use]
    pub fn touch_required(&self) -> bool {
        self.touch_required
    }

    /// FIDO keys must prove user verification (`verify-required`).
    #[must_use]
    pub fn verify_required(&self) -> bool {
        self.verify_required
    }

    /// The forced command (`command="…"`), with `\"` unescaped.
    #[must_use]
    pub fn command(&self) -> Option<&str> {
        self.command.as_deref()
    }

    /// `principals="a,b"` split at commas. sshd ignores it unless `cert-authority` is set.
    #[must_use]
    pub fn principals(&self) -> Option<&[String]> {
        self.principals.as_deref()
    }

    /// The raw `from="pattern-list"`.
    #[must_use]
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// Every `environment="NAME=value"`, in file order. sshd applies them only with
    /// `PermitUserEnvironment`.
    #[must_use]
    pub fn environment(&self) -> &[(String, String)] {
        &self.environment
    }

    /// Every `expiry-time`.
    #[must_use]
    pub fn expiry_times(&self) -> &[ExpiryTime] {
        &self.expiry
    }

    /// Every `permitopen`, in file order.
    #[must_use]
    pub fn permit_open(&self) -> &[PermitOpen] {
        &self.permit_open
    }

    /// Every `permitlisten`, in file order.
    #[must_use]
    pub fn permit_listen(&self) -> &[PermitListen] {
        &self.permit_listen
    }

    /// The `tunnel="…"` option, if given.
    #[must_use]
    pub fn tunnel(&self) -> Option<TunnelDevice> {
        self.tunnel
    }

    /// The tun unit forced by `tunnel="n"`; `None` without the option or with `tunnel="any"`.
    #[must_use]
    pub fn tunnel_unit(&self) -> Option<u32> {
        match self.tunnel {
            Some(TunnelDevice::Unit(n)) => Some(n),
            _ => None,
        }
    }

    /// Whether a `tun@openssh.com` request for `requested` (`None`: any unit, the wire's
    /// `SSH_TUNID_ANY`) passes this key's options; the unit to open is then
    /// [`tunnel_unit`](Self::tunnel_unit) if set, else the requested one.
    ///
    /// As in sshd's `server_request_tun`, only `tunnel=` constrains tunnels: a request must
    /// ask for any unit or for the forced one. `restrict` and `no-port-forwarding` do not
    /// disable tun forwarding in OpenSSH (sshd(8) lists what `restrict` covers, and tunnels
    /// are not among them); whether tunnels are allowed at all is server configuration
    /// (`PermitTunnel` in sshd). Note `tunnel="any"` admits only requests for any unit, as in
    /// OpenSSH.
    #[must_use]
    pub fn allows_tunnel(&self, requested: Option<u32>) -> bool {
        match (self.tunnel, requested) {
            (None, _) | (Some(_), None) => true,
            (Some(TunnelDevice::Unit(forced)), Some(unit)) => forced == unit,
            (Some(TunnelDevice::Any), Some(_)) => false,
        }
    }

    /// Whether a `direct-tcpip` (`ssh -L`/`-D`) to `host:port` is allowed: forwarding must be
    /// allowed, and with any `permitopen` one must match. As in sshd's `open_match`, hosts are
    /// compared literally (no patterns, no name lookup), a `*` host or port matches anything.
    #[must_use]
    pub fn permits_open(&self, host: &str, port: u16) -> bool {
        self.allows_port_forwarding()
            && (self.permit_open.is_empty()
                || self
                    .permit_open
                    .iter()
                    .any(|p| (p.host == "*" || p.host == host) && p.port.matches(port)))
    }

    /// Whether a `tcpip-forward` (`ssh -R`) listening on `host:port` is allowed: forwarding
    /// must be allowed, and with any `permitlisten` one must match. As in sshd's
    /// `remote_open_match`, the requested address is lowercased and matched against the
    /// host pattern. `None` stands for the empty address (all interfaces), which `ssh -R
    /// '*:port'` sends; plain `ssh -R port:…` sends `localhost`, which a `127.0.0.1` entry
    /// does not match. Port 0 (server picks the port) matches only a `*` port.
    #[must_use]
    pub fn permits_listen(&self, host: Option<&str>, port: u16) -> bool {
        let host = host.unwrap_or_default().to_ascii_lowercase();
        self.allows_port_forwarding()
            && (self.permit_listen.is_empty()
                || self.permit_listen.iter().any(|p| {
                    p.port.matches(port)
                        && pattern::match_pattern(host.as_bytes(), p.host.as_bytes())
                }))
    }

    /// Whether a client at `addr`, whose canonical name is `hostname`, passes `from=`. As in
    /// sshd's `match_host_and_ip`: the address (CIDR or wildcard entries) or the name
    /// (wildcard entries, case-insensitive) must match a pattern, and neither may match a
    /// negated one. With `hostname` `None` the address text stands in for the name, as in sshd
    /// with `UseDNS no`. An IPv4-mapped IPv6 address is matched as IPv4, as sshd normalises it.
    #[must_use]
    pub fn from_allows(&self, addr: IpAddr, hostname: Option<&str>) -> bool {
        let Some(patterns) = &self.from else {
            return true;
        };
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            IpAddr::V4(_) => addr,
        };
        let host = hostname.map_or_else(|| addr.to_string(), str::to_owned);
        pattern::match_host_and_ip(&host, addr, patterns)
    }

    /// Whether an `expiry-time` has passed at `now` (seconds since the epoch). sshd refuses a
    /// key once its expiry time is strictly before now. `utc_offset_seconds` is the local
    /// zone's offset east of UTC, for times given without `Z`.
    #[must_use]
    pub fn is_expired(&self, now: i64, utc_offset_seconds: i32) -> bool {
        self.expiry
            .iter()
            .any(|t| t.unix_time(utc_offset_seconds) < now)
    }
}

fn set_once<T>(slot: &mut Option<T>, option: &'static str, value: T) -> Result<(), OptionError> {
    if slot.is_some() {
        return Err(OptionError::Duplicate(option));
    }
    *slot = Some(value);
    Ok(())
}

/// OpenSSH's `opt_dequote`: `text` must start with `"`; `\"` stands for `"` and every other
/// character (backslashes included) is literal. Returns the value and what follows it.
fn dequote<'a>(option: &'static str, text: &'a str) -> Result<(String, &'a str), OptionError> {
    let body = text
        .strip_prefix('"')
        .ok_or(OptionError::MissingStartQuote(option))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let rest = body.get(i + 1..).unwrap_or_default();
                return Ok((value, rest));
            }
            '\\' if body.get(i + 1..).is_some_and(|r| r.starts_with('"')) => {
                value.push('"');
                chars.next();
            }
            _ => value.push(c),
        }
    }
    Err(OptionError::MissingEndQuote(option))
}

/// `host:port` (or `host/port`, `[v6]:port`) as sshd's `handle_permit` validates it, with
/// brackets stripped (`cleanhostname`).
fn parse_permit(spec: &str) -> Result<(String, PortSpec), &'static str> {
    let (host, port) = if let Some(bracketed) = spec.strip_prefix('[') {
        let (inner, after) = bracketed
            .split_once(']')
            .ok_or("invalid permission hostname")?;
        let port = after.strip_prefix([':', '/']).ok_or(if after.is_empty() {
            "invalid permission port"
        } else {
            "invalid permission hostname"
        })?;
        (inner, port)
    } else {
        spec.split_once([':', '/'])
            .ok_or("invalid permission port")?
    };
    if host.is_empty() || host.len() >= MAX_HOST_LEN {
        return Err("invalid permission hostname");
    }
    let port = if port == "*" {
        PortSpec::Any
    } else {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => PortSpec::Port(p),
            _ => return Err("invalid permission port"),
        }
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
