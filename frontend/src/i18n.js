// Texts and number/time formats in German (the original's language, and the default) and
// English. The language comes from a stored choice, else from the browser, else German.

const STORAGE_KEY = 'scrapPulse.lang';
export const LANGUAGES = ['de', 'en'];

const TEXTS = {
  de: {
    title: 'Ausschuss live',
    subtitle: 'Summe und Durchschnitt der letzten {s} s je Maschine und Ausschuss-Index',
    chartTitleSum: 'Ausschuss-Summe je Maschine',
    chartTitleAvg: 'Ausschuss-Durchschnitt je Maschine',
    showSum: 'Summen',
    showAvg: 'Durchschnitte',
    chartMode: 'Diagramm zeigt',
    language: 'Sprache',
    index: 'Index {i}',
    sum: 'Summe',
    // Short: it sits beside the value in a narrow card ("Durchschnitt" would be cut).
    avg: 'Mittel',
    count: 'Meldungen',
    age: 'Aktualisiert',
    // The machine's Sparkplug edge node or device is dead; the figures are its last window.
    offline: 'offline',
    machine: 'Maschine',
    ws: 'Verbindung',
    wsConnecting: 'verbinde …',
    wsOpen: 'verbunden',
    wsClosed: 'getrennt, neuer Versuch in {s} s',
    broker: 'Broker',
    brokerUp: 'verbunden',
    brokerDown: 'getrennt',
    ingest: 'Ingest',
    ingestOnline: 'online',
    ingestOffline: 'offline',
    ingestShards: '{online}/{count} Shards online',
    unknown: 'unbekannt',
    lastUpdate: 'Letzte Daten',
    never: 'noch keine',
    empty: 'Noch keine Daten. Sobald Maschinen Ausschuss melden, erscheinen sie hier.',
    cardsHeading: 'Maschinen',
    ago: 'vor {t}',
    dayUnit: 'T',
    alarms: 'Alarme',
    alarmLine: '{metric} {value} über {threshold} seit {since}',
    alarmNotice: 'Ausschuss-Alarm {machine} · Index {i}',
    notifications: 'Benachrichtigen',
    trend: 'Verlauf',
    // Short, beside a number in a narrow card: the shift now, and the one before it (handover).
    shiftNow: 'Schicht',
    shiftLast: 'Vorschicht',
    view: 'Ansicht',
    viewLive: 'Live',
    viewShifts: 'Schichten',
    shiftHeading: 'Schichten',
    shiftCurrent: 'Laufende Schicht {shift}, {day}, {from}–{to}',
    shiftPrevious: 'Keine laufende Schicht; zuletzt {shift}, {day}, {from}–{to}',
    shiftNone: 'Keine Schichtdaten dieser Maschine in den letzten 8 Tagen.',
    shiftChartTitle: 'Ausschuss je Stunde · {shift}, {day}',
    shiftTable: 'Letzte 7 Tage nach Schicht',
    colDay: 'Tag',
    colShift: 'Schicht',
    colIndex: 'Index',
    colSum: 'Summe',
    colCount: 'Meldungen',
    colAvg: 'Mittelwert',
    colState: 'Stand',
    stateFinal: 'endgültig',
    stateRunning: 'läuft',
    stateProvisional: 'vorläufig',
    csv: 'CSV herunterladen',
    shiftError: 'Schichtdaten nicht abrufbar ({status}).',
    noRows: 'Keine Schichten mit Daten.',
  },
  en: {
    title: 'Scrap live',
    subtitle: 'Sum and average of the last {s} s per machine and scrap index',
    chartTitleSum: 'Scrap sum per machine',
    chartTitleAvg: 'Scrap average per machine',
    showSum: 'Sums',
    showAvg: 'Averages',
    chartMode: 'Chart shows',
    language: 'Language',
    index: 'Index {i}',
    sum: 'Sum',
    avg: 'Average',
    count: 'Readings',
    age: 'Updated',
    offline: 'offline',
    machine: 'Machine',
    ws: 'Connection',
    wsConnecting: 'connecting …',
    wsOpen: 'connected',
    wsClosed: 'disconnected, retrying in {s} s',
    broker: 'Broker',
    brokerUp: 'connected',
    brokerDown: 'disconnected',
    ingest: 'Ingest',
    ingestOnline: 'online',
    ingestOffline: 'offline',
    ingestShards: '{online}/{count} shards online',
    unknown: 'unknown',
    lastUpdate: 'Last data',
    never: 'none yet',
    empty: 'No data yet. Machines appear here as soon as they report scrap.',
    cardsHeading: 'Machines',
    ago: '{t} ago',
    dayUnit: 'd',
    alarms: 'Alarms',
    alarmLine: '{metric} {value} above {threshold} since {since}',
    alarmNotice: 'Scrap alarm {machine} · index {i}',
    notifications: 'Notify me',
    trend: 'Trend',
    shiftNow: 'This shift',
    shiftLast: 'Last shift',
    view: 'View',
    viewLive: 'Live',
    viewShifts: 'Shifts',
    shiftHeading: 'Shifts',
    shiftCurrent: 'Current shift {shift}, {day}, {from}–{to}',
    shiftPrevious: 'No shift running; last was {shift}, {day}, {from}–{to}',
    shiftNone: 'No shift data for this machine in the last 8 days.',
    shiftChartTitle: 'Scrap per hour · {shift}, {day}',
    shiftTable: 'Last 7 days by shift',
    colDay: 'Day',
    colShift: 'Shift',
    colIndex: 'Index',
    colSum: 'Sum',
    colCount: 'Readings',
    colAvg: 'Average',
    colState: 'State',
    stateFinal: 'final',
    stateRunning: 'running',
    stateProvisional: 'provisional',
    csv: 'Download CSV',
    shiftError: 'Shift data not available ({status}).',
    noRows: 'No shifts with data.',
  },
};

/** Picks the language: stored choice, then the browser's preferences, then German. */
export function initialLanguage(stored, preferred) {
  if (LANGUAGES.includes(stored)) return stored;
  for (const tag of preferred ?? []) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return 'de';
}

/** Reads the stored choice; storage may be disabled (private mode, kiosk policies). */
export function storedLanguage() {
  try {
    return globalThis.localStorage?.getItem(STORAGE_KEY) ?? null;
  } catch {
    return null;
  }
}

export function storeLanguage(lang) {
  try {
    globalThis.localStorage?.setItem(STORAGE_KEY, lang);
  } catch {
    // Not persisting is acceptable: the switch still works for this page's lifetime.
  }
}

/** Formatters and texts of one language, built once per switch (Intl objects are costly). */
export class Locale {
  constructor(lang) {
    this.lang = LANGUAGES.includes(lang) ? lang : 'de';
    this.texts = TEXTS[this.lang];
    const tag = this.lang === 'de' ? 'de-DE' : 'en-GB';
    this.tag = tag;
    this.sumFormat = new Intl.NumberFormat(tag, { maximumFractionDigits: 2 });
    this.avgFormat = new Intl.NumberFormat(tag, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    this.countFormat = new Intl.NumberFormat(tag, { maximumFractionDigits: 0 });
    this.clock = new Intl.DateTimeFormat(tag, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    this.dayFormat = new Intl.DateTimeFormat(tag, { weekday: 'short', day: '2-digit', month: '2-digit', year: 'numeric', timeZone: 'UTC' });
  }

  /** A plant day `2026-12-07` as "Mo., 07.12.2026" / "Mon, 07/12/2026" (a date, no zone). */
  day(text) {
    const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
    if (!match) return text;
    return this.dayFormat.format(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])));
  }

  /** The text `key`, with `{name}` placeholders filled from `vars`. */
  t(key, vars) {
    const text = this.texts[key] ?? key;
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
  }

  sum(value) {
    return this.sumFormat.format(value);
  }

  /** Two decimals; a dash for an empty window (no average exists). */
  avg(value) {
    return value === null ? '–' : this.avgFormat.format(value);
  }

  count(value) {
    return this.countFormat.format(value);
  }

  /**
   * "vor 3 s" / "3 s ago", in whole units so the text changes at most once a second. Our own
   * short units: Intl's narrow forms differ between ICU versions and can be wide ("3 Sek.").
   */
  age(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const [n, unit] =
      s < 60 ? [s, 's'] : s < 3600 ? [Math.floor(s / 60), 'min'] : s < 86400 ? [Math.floor(s / 3600), 'h'] : [Math.floor(s / 86400), this.texts.dayUnit];
    return this.t('ago', { t: `${this.countFormat.format(n)} ${unit}` });
  }

  time(ms) {
    return this.clock.format(ms);
  }
}
