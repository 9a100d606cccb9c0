import ipaddr from "ipaddr.js";

/**
 * The key a client's rate limits count under: its IPv4 address, or the /64 network of an IPv6
 * address (what one subscriber is usually given), so hopping between addresses inside it gains
 * nothing. `ip` must come from Express's `req.ip`, which honours only TRUST_PROXY's proxies.
 */
export function clientKey(ip: string | undefined): string {
  if (!ip || !ipaddr.isValid(ip)) return "unknown";
  const address = ipaddr.parse(ip);
  if (address.kind() === "ipv4") return address.toString();
  const v6 = address as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  return `${v6.parts.slice(0, 4).map((part) => part.toString(16)).join(":")}::/64`;
}

/**
 * The client's address for storing (sessions keep it): `req.ip` when it is an address, else the
 * peer's. A trusted proxy could still forward garbage in X-Forwarded-For.
 */
export function ipOf(req: { ip?: string; socket: { remoteAddress?: string } }): string | null {
  if (req.ip && ipaddr.isValid(req.ip)) return req.ip;
  const peer = req.socket.remoteAddress;
  return peer && ipaddr.isValid(peer) ? peer : null;
}
