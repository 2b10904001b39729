// The cards: one group per machine (natural order), one card per scrap index (ascending).
// Elements are created once per key and kept in a keyed map; later renders only rewrite the
// text nodes whose string changed. Every wire value goes in through textContent/data.

import { decorateCard } from './alarm-view.js';
import { colourFor } from './chart.js';
import { keyOf, naturalCompare, sortedIndex } from './state.js';

/** Creates `<tag class=...>` with optional static text (never wire data as markup). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A text node whose content is only written when it changes (writes cost style/layout). */
class Slot {
  constructor(parent) {
    this.node = document.createTextNode('');
    parent.append(this.node);
    this.value = '';
  }

  set(value) {
    if (value !== this.value) {
      this.value = value;
      this.node.data = value;
    }
  }
}

/** A label that follows the language switch. */
function label(parent, key, locale) {
  const node = el('span', 'label', locale.t(key));
  node.dataset.i18n = key;
  parent.append(node);
  return node;
}

class Card {
  constructor(machine, index, locale) {
    this.machine = machine;
    this.index = index;
    this.root = el('div', 'card');
    this.root.setAttribute('role', 'group');
    // The same colour as the index's bars, so card and chart read together.
    this.root.style.setProperty('--index-colour', colourFor(index));
    const head = el('div', 'card-head');
    const title = el('span', 'card-index');
    this.title = new Slot(title);
    // Said in words, not only by the muted look: a dim card may also just be an empty window.
    const offline = el('span', 'card-offline', locale.t('offline'));
    offline.dataset.i18n = 'offline';
    offline.hidden = true;
    this.offlineBadge = offline;
    const age = el('span', 'card-age');
    this.age = new Slot(age);
    head.append(title, offline, age);

    const sumBox = el('div', 'card-sum');
    this.sumBox = sumBox;
    this.sumSize = null;
    label(sumBox, 'sum', locale);
    const sumValue = el('span', 'value');
    this.sum = new Slot(sumValue);
    sumBox.append(sumValue);

    const facts = el('div', 'card-facts');
    const avgBox = el('div', 'fact fact-avg');
    label(avgBox, 'avg', locale);
    const avgValue = el('span', 'value');
    this.avg = new Slot(avgValue);
    avgBox.append(avgValue);
    const countBox = el('div', 'fact fact-count');
    label(countBox, 'count', locale);
    const countValue = el('span', 'value');
    this.count = new Slot(countValue);
    countBox.append(countValue);
    facts.append(avgBox, countBox);

    // This shift's and the last shift's total, from the historian; hidden without one.
    const shifts = el('div', 'card-facts card-shifts');
    shifts.hidden = true;
    this.shiftBox = shifts;
    const nowBox = el('div', 'fact fact-shift-now');
    label(nowBox, 'shiftNow', locale);
    const nowValue = el('span', 'value');
    this.shiftNow = new Slot(nowValue);
    nowBox.append(nowValue);
    const lastBox = el('div', 'fact fact-shift-last');
    label(lastBox, 'shiftLast', locale);
    const lastValue = el('span', 'value');
    this.shiftLast = new Slot(lastValue);
    lastBox.append(lastValue);
    shifts.append(nowBox, lastBox);
    this.shift = undefined;

    this.root.append(head, sumBox, facts);
    decorateCard(this);
    // Below the alarm line and the trend, which belong to the live figures.
    this.root.append(shifts);
    this.empty = null;
    this.offline = null;
    this.aggregate = null;
    this.title.set(locale.t('index', { i: index }));
  }

  update(aggregate, locale) {
    this.aggregate = aggregate;
    const sumText = locale.sum(aggregate.sum);
    this.sum.set(sumText);
    // Big numbers get a smaller font rather than wrapping mid-number in a narrow card.
    const size = sumText.length > 9 ? 'xlong' : sumText.length > 6 ? 'long' : '';
    if (size !== this.sumSize) {
      this.sumSize = size;
      this.sumBox.dataset.size = size;
    }
    this.avg.set(locale.avg(aggregate.avg));
    this.count.set(locale.count(aggregate.count));
    const empty = aggregate.count === 0;
    if (empty !== this.empty) {
      this.empty = empty;
      this.root.classList.toggle('empty', empty);
    }
    if (aggregate.offline !== this.offline) {
      this.offline = aggregate.offline;
      this.root.classList.toggle('offline', aggregate.offline);
      this.offlineBadge.hidden = !aggregate.offline;
    }
  }

  /** Shows a key's `{current, previous}` shift totals; `undefined` hides them. */
  showShift(entry, locale) {
    this.shift = entry;
    const hidden = entry === undefined;
    if (this.shiftBox.hidden !== hidden) this.shiftBox.hidden = hidden;
    if (hidden) return;
    this.shiftNow.set(entry.current ? locale.sum(entry.current.sum) : '–');
    this.shiftLast.set(entry.previous ? locale.sum(entry.previous.sum) : '–');
  }

  tick(now, locale) {
    const time = this.aggregate?.time;
    this.age.set(time === null || time === undefined ? '' : locale.age(now - time));
  }

  /** Rewrites every text, for a language switch. */
  relabel(locale, now) {
    this.title.set(locale.t('index', { i: this.index }));
    if (this.aggregate) this.update(this.aggregate, locale);
    this.showShift(this.shift, locale);
    this.tick(now, locale);
  }
}

class MachineGroup {
  constructor(machine) {
    this.machine = machine;
    this.root = el('section', 'machine');
    const heading = el('h2', 'machine-name');
    this.name = new Slot(heading);
    this.name.set(machine);
    this.grid = el('div', 'cards');
    this.root.append(heading, this.grid);
    this.cards = new Map();
  }
}

/** All cards under `container`, kept in step with a `DashboardState`. */
export class CardsView {
  /** `onCreate(card)` runs for each new card (the alarm view shows its alarm and trend). */
  constructor(container, emptyNotice, onCreate = () => {}) {
    this.onCreate = onCreate;
    this.container = container;
    this.emptyNotice = emptyNotice;
    /** machine -> MachineGroup */
    this.groups = new Map();
    /** keyOf(machine, index) -> Card */
    this.cards = new Map();
    /** card root element -> Card, to read the cards back in DOM order */
    this.byElement = new WeakMap();
  }

  /** Applies the keys `state.dirty` names, then clears it. */
  render(state, locale, now) {
    for (const key of state.dirty) {
      const split = key.indexOf('\u0000');
      const machine = key.slice(0, split);
      const index = Number(key.slice(split + 1));
      const aggregate = state.get(machine, index);
      if (aggregate) this.#upsert(state, aggregate, locale, now);
      else this.#remove(machine, index);
    }
    state.dirty.clear();
    this.emptyNotice.hidden = this.cards.size > 0;
  }

  /** Ages tick with the clock, not with the data. */
  tick(locale, now) {
    for (const card of this.cards.values()) card.tick(now, locale);
  }

  relabel(locale, now) {
    for (const card of this.cards.values()) card.relabel(locale, now);
    for (const node of this.container.querySelectorAll('[data-i18n]')) {
      node.textContent = locale.t(node.dataset.i18n);
    }
  }

  #upsert(state, aggregate, locale, now) {
    const key = keyOf(aggregate.machine, aggregate.index);
    let card = this.cards.get(key);
    if (!card) {
      const group = this.#group(state, aggregate.machine);
      card = new Card(aggregate.machine, aggregate.index, locale);
      // Insert before the nearest following index that already has a card: existing
      // cards are always in order, so the group stays sorted whatever order keys arrive in.
      const order = state.indexOrder.get(aggregate.machine);
      let before = null;
      for (let i = sortedIndex(order, aggregate.index, (a, b) => a - b) + 1; i < order.length; i++) {
        const next = group.cards.get(order[i]);
        if (next) {
          before = next.root;
          break;
        }
      }
      group.grid.insertBefore(card.root, before);
      group.cards.set(aggregate.index, card);
      this.cards.set(key, card);
      this.byElement.set(card.root, card);
      this.onCreate(card);
    }
    card.update(aggregate, locale);
    card.tick(now, locale);
  }

  #group(state, machine) {
    let group = this.groups.get(machine);
    if (group) return group;
    group = new MachineGroup(machine);
    const order = state.machineOrder;
    let before = null;
    for (let i = sortedIndex(order, machine, naturalCompare) + 1; i < order.length; i++) {
      const next = this.groups.get(order[i]);
      if (next) {
        before = next.root;
        break;
      }
    }
    this.container.insertBefore(group.root, before);
    this.groups.set(machine, group);
    return group;
  }

  #remove(machine, index) {
    const key = keyOf(machine, index);
    const card = this.cards.get(key);
    if (!card) return;
    card.root.remove();
    this.cards.delete(key);
    const group = this.groups.get(machine);
    group.cards.delete(index);
    if (group.cards.size === 0) {
      group.root.remove();
      this.groups.delete(machine);
    }
  }

  /** Shows the shift totals of the keys in `dirty` (all cards when null) from `feed`. */
  showShifts(feed, locale, dirty = null) {
    if (dirty === null) {
      for (const card of this.cards.values()) card.showShift(feed.get(card.machine, card.index), locale);
      return;
    }
    for (const key of dirty) {
      const card = this.cards.get(key);
      if (card) card.showShift(feed.keys.get(key), locale);
    }
  }

  /** The card of a key, or `undefined`. */
  card(machine, index) {
    return this.cards.get(keyOf(machine, index));
  }

  /** What the cards show, read back from the DOM (for tests and debugging). */
  snapshot() {
    const out = [];
    for (const root of this.container.querySelectorAll('.card')) {
      const card = this.byElement.get(root);
      out.push({
        machine: card.machine,
        index: card.index,
        machineText: this.groups.get(card.machine).name.node.data,
        title: card.title.node.data,
        sum: card.sum.node.data,
        avg: card.avg.node.data,
        count: card.count.node.data,
        age: card.age.node.data,
        empty: root.classList.contains('empty'),
        offline: root.classList.contains('offline'),
        offlineText: card.offlineBadge.hidden ? '' : card.offlineBadge.textContent,
        alarm: root.classList.contains('alarm'),
        alarmText: card.alarmLine.hidden ? '' : card.alarmText.data,
        shiftNow: card.shiftBox.hidden ? null : card.shiftNow.node.data,
        shiftLast: card.shiftBox.hidden ? null : card.shiftLast.node.data,
        spark: card.sparkPoints,
      });
    }
    return out;
  }
}
