// The mirror's own certificate authority: an ECDSA P-256 root whose critical name constraints
// permit only the intercepted hosts and the registry's own names, so that trusting it on a
// client lets it vouch for nothing else, and one leaf (≤ 397 days) for those names.
// @peculiar/x509 (with its ASN.1 schema packages for the constraint) is the maintained X.509
// library on WebCrypto; node-forge is avoided (RSA-centric, slow, past CVEs).
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it loaded first
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName as AsnGeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
export const MAX_LEAF_DAYS = 397; // the CA/Browser Forum's limit, which Apple's verifier enforces

export interface Pem {
  cert: string;
  key: string;
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** One permitted subtree per name: a DNS name (and its subdomains, per RFC 5280) or one exact IP. */
function nameConstraints(names: string[]): x509.Extension {
  const subtrees = names.map((n) => {
    // An IP subtree is address and mask: this exact address only.
    if (isIP(n)) return new GeneralSubtree({ base: new AsnGeneralName({ iPAddress: `${n}/${isIP(n) === 4 ? 32 : 128}` }) });
    return new GeneralSubtree({ base: new AsnGeneralName({ dNSName: n }) });
  });
  const value = AsnConvert.serialize(new NameConstraints({ permittedSubtrees: new GeneralSubtrees(subtrees) }));
  return new x509.Extension(id_ce_nameConstraints, true, value);
}

function sans(names: string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: (isIP(n) ? 'ip' : 'dns') as x509.GeneralNameType, value: n })));
}

/** A new root, constrained to `names`, valid for `days`. */
export async function makeRoot(names: string[], days = 3650, label = 'ollama-registry mirror CA'): Promise<Pem & { keys: CryptoKeyPair }> {
  const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${label}, O=ollama-registry`,
    keys,
    signingAlgorithm: SIGN,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      nameConstraints(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await keyPem(keys), keys };
}

/** A leaf for `names`, signed by the root; `notBefore`/`days` are settable for tests of expiry. */
export async function makeLeaf(root: Pem, names: string[], opts: { days?: number; notBefore?: Date } = {}): Promise<Pem> {
  const days = Math.min(opts.days ?? MAX_LEAF_DAYS, MAX_LEAF_DAYS);
  const rootCert = new x509.X509Certificate(root.cert);
  const rootKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(root.key), EC, false, ['sign']);
  const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
  const from = opts.notBefore ?? new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${names[0]}`,
    issuer: rootCert.subject,
    publicKey: keys.publicKey,
    signingKey: rootKey as unknown as CryptoKey,
    signingAlgorithm: SIGN,
    notBefore: from,
    notAfter: new Date(from.getTime() + days * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      sans(names),
      await x509.AuthorityKeyIdentifierExtension.create(rootCert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await keyPem(keys) };
}

/** What is wrong with a leaf for serving `names` now, or null. */
export function leafProblem(certPem: string, names: string[], now = new Date()): string | null {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e) {
    return `the certificate does not parse: ${(e as Error).message}`;
  }
  if (cert.notBefore > now) return `the certificate is not valid before ${cert.notBefore.toISOString()}`;
  if (cert.notAfter < now) return `the certificate expired on ${cert.notAfter.toISOString()} (renew it: ollama-registry ca init --renew-leaf)`;
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const have = new Set((san?.names.items ?? []).map((n) => n.value.toLowerCase()));
  const missing = names.filter((n) => !have.has(n.toLowerCase()));
  if (missing.length) return `the certificate does not name ${missing.join(', ')} (it names ${[...have].join(', ') || 'nothing'})`;
  return null;
}

/** The names a root's name constraints permit (DNS subtrees, IP addresses); null when it has none or does not parse. */
export function permittedNames(caPem: string): string[] | null {
  try {
    const ext = new x509.X509Certificate(caPem).getExtension(id_ce_nameConstraints);
    if (!ext) return null;
    const nc = AsnConvert.parse(ext.value, NameConstraints);
    return Array.from(nc.permittedSubtrees ?? []).map((t) => t.base.dNSName ?? ipOf(t.base.iPAddress)).filter((n): n is string => !!n);
  } catch {
    return null;
  }
}

function ipOf(octets: string | undefined): string | undefined {
  // asn1-x509 gives the address/mask as text ("127.0.0.1/32"): the address part.
  return octets?.split('/')[0];
}

/** Whether a DNS subtree or IP in `permitted` covers `name` (RFC 5280: the name or a subdomain). */
export function permits(permitted: string[], name: string): boolean {
  const n = name.toLowerCase();
  return permitted.some((p) => n === p.toLowerCase() || (!isIP(n) && n.endsWith(`.${p.toLowerCase()}`)));
}

/** Why a root cannot vouch for all of `names` (the host list grew after `ca init`), or null. */
export function rootProblem(caPem: string, names: string[], dir: string): string | null {
  const permitted = permittedNames(caPem);
  if (!permitted) return null;
  const outside = names.filter((n) => !permits(permitted, n));
  if (!outside.length) return null;
  return `the CA in ${dir} may vouch only for ${permitted.join(', ')} (its name constraints), not ${outside.join(', ')}: ` +
    `the intercepted hosts grew after ca init, so the CA must be re-made (ollama-registry ca init --force --dir ${dir} --host ${names.join(' --host ')}) ` +
    'and every client must trust the new ca.pem';
}
