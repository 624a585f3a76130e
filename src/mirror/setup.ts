// What a client machine needs for the transparent mirror, per OS: trust the mirror's CA and,
// in proxy mode, send ollama's HTTPS through the registry. One text, printed by
// `ollama-registry client-setup` and served at /mirror/setup?os=… for the web page.

export type ClientOs = 'linux' | 'macos' | 'windows' | 'docker';
export const CLIENT_OSES: ClientOs[] = ['linux', 'macos', 'windows', 'docker'];

export interface SetupInput {
  os: ClientOs;
  /** The registry as clients reach it, e.g. http://10.0.0.5:8080. */
  registry: string;
  mode: 'proxy' | 'dns';
  uninstall?: boolean;
}

export const LINUX_CA = '/etc/ollama-registry/mirror-ca.pem';
export const LINUX_DROPIN = '/etc/systemd/system/ollama.service.d/ollama-registry-mirror.conf';

/** The systemd drop-in: scoped to ollama's own service, nothing else on the machine changes. */
export function linuxDropIn(registry: string, mode: 'proxy' | 'dns'): string {
  const host = new URL(registry).hostname;
  const lines = ['# Written by ollama-registry client-setup: ollama pulls through the LAN mirror.', '[Service]'];
  if (mode === 'proxy') {
    lines.push(`Environment="HTTPS_PROXY=${registry}"`, `Environment="NO_PROXY=localhost,127.0.0.1,::1,${host}"`);
  }
  // Go reads this file and still the system's /etc/ssl/certs, so public sites keep working.
  lines.push(`Environment="SSL_CERT_FILE=${LINUX_CA}"`);
  return `${lines.join('\n')}\n`;
}

export function setupText(i: SetupInput): string {
  const ca = `${i.registry}/mirror/ca.pem`;
  const host = new URL(i.registry).hostname;
  const proxy = i.mode === 'proxy';
  const dnsNote = proxy ? '' : `\n# DNS mode: your LAN's DNS (or this machine's hosts file) must answer registry.ollama.ai (and any other host the mirror intercepts, e.g. hf.co) with ${host}.\n`;
  switch (i.os) {
    case 'linux':
      if (i.uninstall) {
        return `sudo rm -f ${LINUX_DROPIN} ${LINUX_CA}\nsudo systemctl daemon-reload && sudo systemctl restart ollama\n`;
      }
      return `${dnsNote}# As root on the machine that runs ollama (or: sudo ollama-registry client-setup --os linux${proxy ? '' : ' --mode dns'} --registry ${i.registry} --apply)\n` +
        `sudo mkdir -p /etc/ollama-registry ${LINUX_DROPIN.replace(/\/[^/]+$/, '')}\n` +
        `curl -fsS ${ca} | sudo tee ${LINUX_CA} >/dev/null\n` +
        `sudo tee ${LINUX_DROPIN} >/dev/null <<'EOF'\n${linuxDropIn(i.registry, i.mode)}EOF\n` +
        'sudo systemctl daemon-reload && sudo systemctl restart ollama\n' +
        'ollama pull gemma2:2b    # unchanged names, served by the LAN registry\n';
    case 'macos':
      if (i.uninstall) {
        return 'sudo security delete-certificate -c "ollama-registry mirror CA" /Library/Keychains/System.keychain\n' +
          (proxy ? 'launchctl unsetenv HTTPS_PROXY; launchctl unsetenv NO_PROXY\n' : '') + '# then quit and reopen the Ollama app\n';
      }
      return `${dnsNote}curl -fsS ${ca} -o /tmp/ollama-registry-ca.pem\n` +
        'sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain /tmp/ollama-registry-ca.pem\n' +
        (proxy ? `launchctl setenv HTTPS_PROXY ${i.registry}\nlaunchctl setenv NO_PROXY localhost,127.0.0.1,::1,${host}\n` : '') +
        '# then quit and reopen the Ollama app (it reads its environment once, at start)\n';
    case 'windows':
      if (i.uninstall) {
        return 'certutil -user -delstore Root "ollama-registry mirror CA"\n' +
          (proxy ? 'reg delete HKCU\\Environment /v HTTPS_PROXY /f\nreg delete HKCU\\Environment /v NO_PROXY /f\n' : '') + 'REM then quit Ollama from the tray and start it again\n';
      }
      return `${dnsNote ? `REM DNS mode: registry.ollama.ai (and any other intercepted host, e.g. hf.co) must resolve to ${host} (LAN DNS, or C:\\Windows\\System32\\drivers\\etc\\hosts)\n` : ''}` +
        `curl.exe -fsS ${ca} -o %TEMP%\\ollama-registry-ca.pem\n` +
        'certutil -user -addstore Root %TEMP%\\ollama-registry-ca.pem\n' +
        (proxy ? `setx HTTPS_PROXY ${i.registry}\nsetx NO_PROXY localhost,127.0.0.1,::1,${host}\n` : '') +
        'REM then quit Ollama from the tray and start it again (it reads its environment once, at start)\n';
    case 'docker':
      if (i.uninstall) return '# run the ollama container again without the -e HTTPS_PROXY/NO_PROXY and the ca.pem volume\n';
      return `${dnsNote}curl -fsS ${ca} -o ollama-registry-ca.pem\n` +
        'docker run -d --name ollama -p 11434:11434 -v ollama:/root/.ollama \\\n' +
        '  -v "$PWD/ollama-registry-ca.pem:/etc/ssl/certs/ollama-registry-ca.pem:ro" \\\n' +
        (proxy ? `  -e HTTPS_PROXY=${i.registry} -e NO_PROXY=localhost,127.0.0.1,::1,${host} \\\n` : `  --add-host registry.ollama.ai:${host} \\\n`) +
        '  ollama/ollama\n';
  }
}
