// TodoMVC in Vue 3 (vue from npm, runtime template compiler, styled by todomvc-app-css),
// following the TodoMVC app spec like the React one beside it. A benchmark subject
// (benchmarks/latency_realapp.py), not part of StreamDOM.
import { createApp, nextTick } from 'vue/dist/vue.esm-bundler.js';

const filters = { all: () => true, active: (t) => !t.completed, completed: (t) => t.completed };
const route = () => (location.hash.replace(/^#\/?/, '') || 'all');
let nextId = 1;

createApp({
  template: `
  <section class="todoapp">
    <header class="header">
      <h1>todos</h1>
      <input class="new-todo" autofocus placeholder="What needs to be done?" v-model="draft" @keyup.enter="add">
    </header>
    <section class="main" v-show="todos.length">
      <input id="toggle-all" class="toggle-all" type="checkbox" :checked="allDone" @change="toggleAll">
      <label for="toggle-all">Mark all as complete</label>
      <ul class="todo-list">
        <li v-for="todo in shown" class="todo" :key="todo.id"
            :class="{ completed: todo.completed, editing: todo === editing }">
          <div class="view">
            <input class="toggle" type="checkbox" v-model="todo.completed">
            <label @dblclick="edit(todo)">{{ todo.title }}</label>
            <button class="destroy" @click="remove(todo)"></button>
          </div>
          <input v-if="todo === editing" class="edit" type="text" v-model="editText" ref="editInput"
                 @blur="done(todo)" @keyup.enter="done(todo)" @keyup.escape="editing = null">
        </li>
      </ul>
    </section>
    <footer class="footer" v-show="todos.length">
      <span class="todo-count"><strong>{{ left }}</strong> {{ left === 1 ? 'item' : 'items' }} left</span>
      <ul class="filters">
        <li><a href="#/" :class="{ selected: filter === 'all' }">All</a></li>
        <li><a href="#/active" :class="{ selected: filter === 'active' }">Active</a></li>
        <li><a href="#/completed" :class="{ selected: filter === 'completed' }">Completed</a></li>
      </ul>
      <button class="clear-completed" @click="todos = todos.filter((t) => !t.completed)"
              v-show="todos.length > left">Clear completed</button>
    </footer>
  </section>`,
  data: () => ({ todos: [], draft: '', editing: null, editText: '', filter: route() }),
  computed: {
    shown() { return this.todos.filter(filters[this.filter] || filters.all); },
    left() { return this.todos.filter(filters.active).length; },
    allDone() { return this.todos.length > 0 && this.left === 0; },
  },
  mounted() { window.addEventListener('hashchange', () => { this.filter = route(); }); },
  methods: {
    add() {
      const title = this.draft.trim();
      if (title) this.todos.push({ id: nextId++, title, completed: false });
      this.draft = '';
    },
    remove(todo) { this.todos.splice(this.todos.indexOf(todo), 1); },
    toggleAll() { const v = !this.allDone; for (const t of this.todos) t.completed = v; },
    edit(todo) {
      this.editing = todo;
      this.editText = todo.title;
      nextTick(() => { const el = this.$refs.editInput; (Array.isArray(el) ? el[0] : el)?.focus(); });
    },
    done(todo) {
      if (this.editing !== todo) return;
      this.editing = null;
      const v = this.editText.trim();
      if (v) todo.title = v;
      else this.remove(todo);
    },
  },
}).mount('#app');
