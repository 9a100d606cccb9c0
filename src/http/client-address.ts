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
